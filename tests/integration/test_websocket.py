# SPDX-License-Identifier: Apache-2.0
"""STOMP over WebSocket (issue 17 item 5, architecture §14): a listener with
`transport: websocket` serves the unchanged STOMP adapter through the
WebSocket layer (adapters/transport_ws.c, framing by wslay).

- A browser: headless Chromium (driven over the DevTools protocol on a pipe)
  loads a page from a loopback http.server that runs @stomp/stompjs, connects
  over ws:// from an allowed origin, subscribes to a queue with
  client-individual acks, publishes three messages and acks each with a
  receipt; the page posts what it got back to the test, which asserts the
  exact messages, and the test keeps a screenshot of the page
  (tests/integration/artifacts/websocket-browser.png in the build tree).
- A raw client (tests/integration/ws_client.py) for what a browser library
  would not send: a wrong subprotocol, a foreign origin (403), another path
  (404), an oversized message (close 1009), a ping, and the close handshake.
- An upgrade that never completes is closed after limits.handshake_timeout.
- wss (a listener with both `transport: websocket` and `tls:`): the same
  page over wss:// (Chromium accepts the test server key by its SPKI hash),
  and ws_client over Python's ssl against the test CA, with mTLS.
"""

import base64
import hashlib
import http.server
import json
import os
import re
import select
import socket
import ssl
import subprocess
import tempfile
import threading
import uuid

import pytest

from conftest import (BUILDDIR, EXTERNAL_BOOTSTRAP, SRCDIR, base_config, metrics, under_sanitizer,
                      wait_for)
from stomp_util import Client
from test_tls import hash_password, pki, tls_of, user  # noqa: F401 (pki: a fixture)
from ws_client import BINARY, CLOSE, PING, PONG, TEXT, HandshakeRefused, WebSocket, close_code

STOMPJS = os.path.join(SRCDIR, "tests", "integration", "clients", "node_modules", "@stomp",
                       "stompjs", "bundles", "stomp.umd.min.js")
ARTIFACTS = os.path.join(BUILDDIR, "tests", "integration", "artifacts")


@pytest.fixture
def qname():
    return f"web-{uuid.uuid4().hex[:12]}" if EXTERNAL_BOOTSTRAP else "web"


def ws_config(bootstrap, origins=None, **websocket):
    config = base_config(bootstrap, kafka={"consumer": {"session.timeout.ms": 6000}})
    options = dict(websocket)
    if origins:
        options["origins"] = origins
    listener = {"bind": "127.0.0.1:0", "protocols": ["stomp"], "transport": "websocket"}
    if options:
        listener["websocket"] = options
    config["listeners"]["web"] = listener
    return config


def start(kbridged_factory, config):
    daemon = kbridged_factory(config)
    wait_for(lambda: "web" in daemon.addresses, 15, "the websocket listener")
    return daemon


def ws_connect(daemon, **kwargs):
    host, port = daemon.host_port("web")
    return WebSocket.connect(host, port, **kwargs)


def stomp_connect(ws):
    ws.send_text("CONNECT\naccept-version:1.2\nhost:/\nheart-beat:0,0\n\n\0")
    (connected,) = ws.stomp_frames(1)
    assert connected.startswith("CONNECTED\nversion:1.2\n"), connected
    return connected


# ---- the browser ----------------------------------------------------------------------

PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>kbridge Web-STOMP</title>
<script src="/stomp.umd.min.js"></script>
<style>
body { font-family: sans-serif; margin: 2em; }
li { font-family: monospace; font-size: 16px; }
</style></head>
<body>
<h1>kbridge: STOMP over WebSocket</h1>
<p id="url"></p>
<p id="status">connecting</p>
<ol id="messages"></ol>
<script>
const cfg = %(config)s;
document.getElementById('url').textContent = cfg.url;
const received = [], acked = [];
let finished = false, version = null;
function report(result) {
  if (finished) return;
  finished = true;
  document.getElementById('status').textContent =
    result.ok ? 'done: ' + acked.length + ' acked' : 'failed: ' + result.error;
  fetch('/result', {method: 'POST', body: JSON.stringify(result)})
    .then(() => { document.title = 'reported'; });
}
const client = new StompJs.Client({
  brokerURL: cfg.url, connectHeaders: {host: '/'}, reconnectDelay: 0,
  heartbeatIncoming: 0, heartbeatOutgoing: 0,
});
client.onStompError = f => report({ok: false, error: f.headers.message + ': ' + f.body});
client.onWebSocketClose = e => report({ok: false, error: 'WebSocket closed with ' + e.code});
client.onConnect = frame => {
  version = frame.headers.version;
  document.getElementById('status').textContent = 'connected, STOMP ' + version;
  client.watchForReceipt('sub-1', () => {
    for (let i = 1; i <= 3; i++)
      client.publish({destination: cfg.queue, body: 'message ' + i + ' \\u2713',
                      headers: {'x-seq': String(i), 'content-type': 'text/plain'}});
  });
  client.subscribe(cfg.queue, msg => {
    const seq = msg.headers['x-seq'];
    const li = document.createElement('li');
    li.textContent = msg.headers.destination + ' #' + seq + ': ' + msg.body;
    document.getElementById('messages').appendChild(li);
    received.push({seq: seq, body: msg.body, destination: msg.headers.destination,
                   contentType: msg.headers['content-type']});
    client.watchForReceipt('ack-' + seq, () => {
      acked.push(seq);
      if (acked.length === 3)
        report({ok: true, version: version, subprotocol: client.webSocket.protocol,
                received: received, acked: acked});
    });
    msg.ack({receipt: 'ack-' + seq});
  }, {id: 'sub-1', ack: 'client-individual', receipt: 'sub-1'});
};
client.activate();
</script>
</body></html>
"""


class PageServer:
    """http.server on a loopback ephemeral port: the page, stompjs, and
    POST /result (what the page reports)."""

    def __init__(self):
        self.page = ""
        self.results = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                if self.path == "/":
                    self._send(200, "text/html; charset=utf-8", outer.page.encode())
                elif self.path == "/stomp.umd.min.js":
                    with open(STOMPJS, "rb") as f:
                        self._send(200, "text/javascript", f.read())
                else:
                    self._send(404, "text/plain", b"not found")

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                outer.results.append(json.loads(body))
                self._send(204, "text/plain", b"")

            def _send(self, status, content_type, body):
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.origin = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


class Chromium:
    """Headless Chromium driven over the DevTools protocol on a pipe
    (--remote-debugging-pipe: NUL-terminated JSON on fds 3 and 4)."""

    def __init__(self, profile, extra_args=()):
        to_browser_r, self.to_browser = os.pipe()
        self.from_browser, from_browser_w = os.pipe()
        args = ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                "--disable-dev-shm-usage", "--remote-debugging-pipe", "--window-size=900,600",
                f"--user-data-dir={profile}", *extra_args, "about:blank"]
        # bash moves the pipe ends to the fds the protocol uses, 3 and 4
        script = (f'exec "$@" 3<&{to_browser_r} 4>&{from_browser_w} '
                  f'{to_browser_r}<&- {from_browser_w}>&-')
        self.proc = subprocess.Popen(["/bin/bash", "-c", script, "bash"] + args,
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL,
                                     pass_fds=(to_browser_r, from_browser_w))
        os.close(to_browser_r)
        os.close(from_browser_w)
        self.buffer = b""
        self.next_id = 0

    def call(self, method, session=None, timeout=60, **params):
        self.next_id += 1
        message = {"id": self.next_id, "method": method, "params": params}
        if session:
            message["sessionId"] = session
        os.write(self.to_browser, json.dumps(message).encode() + b"\0")
        reply = wait_for(lambda: self._reply(self.next_id), timeout, f"DevTools {method}",
                         interval=0)
        if "error" in reply:
            raise AssertionError(f"DevTools {method}: {reply['error']}")
        return reply.get("result", {})

    def _reply(self, wanted):
        while b"\0" not in self.buffer:
            if not select.select([self.from_browser], [], [], 0.1)[0]:
                return None  # wait_for asks again until its deadline
            chunk = os.read(self.from_browser, 1 << 20)
            if not chunk:
                raise AssertionError("chromium closed its DevTools pipe")
            self.buffer += chunk
        while b"\0" in self.buffer:
            raw, _, self.buffer = self.buffer.partition(b"\0")
            message = json.loads(raw)
            if message.get("id") == wanted:
                return message
        return None

    def close(self):
        try:
            os.write(self.to_browser, json.dumps({"id": 0, "method": "Browser.close"}).encode() +
                     b"\0")
            self.proc.wait(15)
        except (OSError, subprocess.TimeoutExpired):
            self.proc.kill()
            self.proc.wait()
        os.close(self.to_browser)
        os.close(self.from_browser)


def run_stompjs_page(daemon, pages, url, queue, screenshot, chromium_args=()):
    """Load the stompjs page in headless Chromium against `url`; wait for its
    report, keep a screenshot (ARTIFACTS/screenshot); (report, list items shown)."""
    pages.page = PAGE % {"config": json.dumps({"url": url, "queue": queue})}
    chromium = None
    try:
        with tempfile.TemporaryDirectory() as profile:
            chromium = Chromium(profile, chromium_args)
            target = chromium.call("Target.createTarget", url="about:blank")["targetId"]
            session = chromium.call("Target.attachToTarget", targetId=target,
                                    flatten=True)["sessionId"]
            chromium.call("Page.enable", session=session)
            chromium.call("Page.navigate", session=session, url=pages.origin + "/")
            wait_for(lambda: pages.results, 90, "the page's report", interval=0.1)

            def title():
                return chromium.call("Runtime.evaluate", session=session,
                                     expression="document.title",
                                     returnByValue=True)["result"]["value"] == "reported"
            wait_for(title, 30, "the page to show its result", interval=0.1)
            shot = chromium.call("Page.captureScreenshot", session=session, format="png")
            os.makedirs(ARTIFACTS, exist_ok=True)
            with open(os.path.join(ARTIFACTS, screenshot), "wb") as f:
                f.write(base64.b64decode(shot["data"]))
            shown = chromium.call("Runtime.evaluate", session=session, returnByValue=True,
                                  expression="[...document.querySelectorAll('li')]"
                                             ".map(li => li.textContent)")["result"]["value"]
            chromium.close()
            chromium = None
    finally:
        if chromium:
            chromium.close()
    (result,) = pages.results
    return result, shown


def assert_page_round_trip(result, shown, qname):
    assert result["ok"], result
    assert result["version"] == "1.2"
    assert result["subprotocol"] == "v12.stomp"
    received = sorted(result["received"], key=lambda m: m["seq"])
    assert received == [{"seq": str(i), "body": f"message {i} \u2713",
                         "destination": f"/queue/{qname}", "contentType": "text/plain"}
                        for i in (1, 2, 3)]
    assert sorted(result["acked"]) == ["1", "2", "3"]
    assert sorted(shown) == [f"/queue/{qname} #{i}: message {i} \u2713" for i in (1, 2, 3)]


def test_stompjs_in_headless_chromium_sends_subscribes_and_acks_over_websocket(
        kbridged_factory, bootstrap, qname):
    pages = PageServer()  # first: the daemon allows the page's origin
    try:
        daemon = start(kbridged_factory, ws_config(bootstrap, origins=[pages.origin]))
        host, port = daemon.host_port("web")
        result, shown = run_stompjs_page(daemon, pages, f"ws://{host}:{port}/ws",
                                         f"/queue/{qname}", "websocket-browser.png")
        assert_page_round_trip(result, shown, qname)
        assert re.search(r"connection opened \(websocket\)", daemon.log())
    finally:
        pages.close()


# ---- wss: WebSocket over TLS ----------------------------------------------------------


def spki_sha256(cert_path):
    """base64 SHA-256 of a certificate's public key (SubjectPublicKeyInfo), as
    Chromium's --ignore-certificate-errors-spki-list takes it."""
    pubkey = subprocess.run(["openssl", "x509", "-in", cert_path, "-pubkey", "-noout"],
                            check=True, capture_output=True).stdout
    der = subprocess.run(["openssl", "pkey", "-pubin", "-outform", "der"], input=pubkey,
                         check=True, capture_output=True).stdout
    return base64.b64encode(hashlib.sha256(der).digest()).decode()


def wss_config(bootstrap, pki, origins=None, verify="none", users=None):
    config = ws_config(bootstrap, origins=origins)
    config["listeners"]["web"]["tls"] = tls_of(pki, verify=verify)
    if users:
        config["auth"] = {"anonymous": True, "users": users}
    return config


def wss_connect(daemon, pki, cert=None, **kwargs):
    """A ws_client.WebSocket over TLS, checking the server against the test CA
    (the certificate names 127.0.0.1 and localhost); `cert`: a client certificate."""
    context = ssl.create_default_context(cafile=pki["ca"])
    if cert:
        context.load_cert_chain(*pki[cert])
    host, port = daemon.host_port("web")
    return WebSocket.connect(host, port, ssl_context=context, **kwargs)


def test_stompjs_in_headless_chromium_over_wss(kbridged_factory, bootstrap, qname, pki):
    """The same page over wss:// with the test CA's server certificate.
    Chromium is told to accept exactly that certificate's key
    (--ignore-certificate-errors-spki-list with its SPKI hash): trusting the
    test CA would need NSS's certutil and a profile database, which Debian's
    chromium package does not bring."""
    pages = PageServer()
    try:
        daemon = start(kbridged_factory, wss_config(bootstrap, pki, origins=[pages.origin]))
        host, port = daemon.host_port("web")
        spki = spki_sha256(pki["server"][0])
        result, shown = run_stompjs_page(
            daemon, pages, f"wss://{host}:{port}/ws", f"/queue/{qname}",
            "websocket-browser-wss.png",
            chromium_args=[f"--ignore-certificate-errors-spki-list={spki}"])
        assert_page_round_trip(result, shown, qname)
        assert re.search(r"connection opened \(wss\)", daemon.log())
        assert re.search(r"listener web listening on \S+ \(WebSocket over TLS: wss\)",
                         daemon.log())
    finally:
        pages.close()


def test_raw_wss_client_round_trip_and_mtls_identity(kbridged_factory, bootstrap, pki, qname):
    """Python's ssl and ws_client over a wss listener: the TLS handshake
    against the test CA, the upgrade inside it, STOMP SUBSCRIBE/SEND/MESSAGE/
    ACK, the close handshake ending with close 1000 and the TLS close; a
    client certificate logs in without login (mTLS through the WebSocket
    layer); a plaintext upgrade on the TLS port is not answered."""
    users = [user("alice", hash_password("unused"))]
    daemon = start(kbridged_factory, wss_config(bootstrap, pki, verify="optional", users=users))

    ws = wss_connect(daemon, pki)
    assert ws.headers["sec-websocket-protocol"] == "v12.stomp"
    assert ws.sock.version() in ("TLSv1.2", "TLSv1.3")
    stomp_connect(ws)
    ws.send_text(f"SUBSCRIBE\nid:0\ndestination:/queue/{qname}\nack:client-individual\n"
                 "receipt:s\n\n\0")
    assert ws.stomp_frames(1) == ["RECEIPT\nreceipt-id:s\n\n"]
    ws.send_text(f"SEND\ndestination:/queue/{qname}\nreceipt:w\n\nover wss \u2713\0")
    frames = ws.stomp_frames(2)
    assert "RECEIPT\nreceipt-id:w\n\n" in frames
    (message,) = [f for f in frames if f.startswith("MESSAGE\n")]
    headers, _, body = message.partition("\n\n")
    assert body == "over wss \u2713"
    assert f"destination:/queue/{qname}" in headers.split("\n")
    ack = [h for h in headers.split("\n") if h.startswith("ack:")][0][4:]
    ws.send_text(f"ACK\nid:{ack}\nreceipt:a\n\n\0")
    assert ws.stomp_frames(1) == ["RECEIPT\nreceipt-id:a\n\n"]
    ws.send_frame(CLOSE, b"\x03\xe8bye")
    _, payload = ws.recv_until_closed()
    assert close_code(payload) == 1000
    assert ws.sock.recv(1) == b""  # close_notify, then EOF
    ws.close()
    daemon.wait_log(r"connection closed \(closed by the client\); user anonymous")

    # mTLS: alice's certificate, CONNECT without login: the user is alice
    ws = wss_connect(daemon, pki, cert="alice")
    stomp_connect(ws)
    ws.send_text(f"SUBSCRIBE\nid:1\ndestination:/topic/{qname}.alice\nreceipt:s\n\n\0")
    assert ws.stomp_frames(1) == ["RECEIPT\nreceipt-id:s\n\n"]
    ws.send_text(f"SEND\ndestination:/topic/{qname}.alice\n\nfrom alice\0")
    (message,) = ws.stomp_frames(1)
    headers, _, body = message.partition("\n\n")
    assert body == "from alice"
    assert "user-id:alice" in headers.split("\n"), message
    ws.send_frame(CLOSE, b"\x03\xe8")
    _, payload = ws.recv_until_closed()
    assert close_code(payload) == 1000
    ws.close()
    daemon.wait_log(r"connection closed \(closed by the client\); user alice")

    # a plaintext WebSocket upgrade on the wss port gets no HTTP answer
    host, port = daemon.host_port("web")
    with pytest.raises((OSError, ValueError)):  # closed (or TLS alert bytes), never HTTP
        WebSocket.connect(host, port, timeout=30)
    assert re.search(r"connection opened \(wss\)", daemon.log())


def test_wss_upgrade_that_never_completes_is_closed_after_handshake_timeout(
        kbridged_factory, bootstrap, pki):
    """On wss the upgrade's clock starts once the TLS handshake is done: a
    client that finishes TLS but never the upgrade is closed (close_notify,
    then EOF) after limits.handshake_timeout."""
    config = wss_config(bootstrap, pki)
    config["limits"] = {"handshake_timeout": "1s"}
    daemon = start(kbridged_factory, config)
    host, port = daemon.host_port("web")
    context = ssl.create_default_context(cafile=pki["ca"])
    with context.wrap_socket(socket.create_connection((host, port)),
                             server_hostname=host) as partial:
        partial.sendall(b"GET /ws HTTP/1.1\r\nHost: x\r\n")  # never finished
        partial.settimeout(60)  # only guards against a hang: the server must close first
        assert partial.recv(1024) == b""
    daemon.wait_log(r"no WebSocket upgrade within limits.handshake_timeout")
    wait_for(lambda: metrics(daemon).get('kbridge_connections{protocol="stomp"}') == 0, 15,
             "the connection gone")


def test_upgrade_refusals_name_the_reason(kbridged_factory, bootstrap):
    daemon = start(kbridged_factory,
                   ws_config(bootstrap, origins=["https://app.example.com"], path="/stomp"))
    cases = [
        (dict(path="/stomp", protocols=("mqtt", "v13.stomp")), 400,
         'no supported subprotocol offered (got "mqtt, v13.stomp"; supported: v10.stomp, '
         'v11.stomp, v12.stomp)'),
        (dict(path="/stomp", origin="https://evil.example.com"), 403,
         'origin "https://evil.example.com" is not in websocket.origins'),
        (dict(path="/ws"), 404, 'no WebSocket endpoint at "/ws" (it is /stomp)'),
        (dict(path="/stomp", extra_headers=("Sec-WebSocket-Version: 8",)), 426, None),
    ]
    for kwargs, status, body in cases:
        with pytest.raises(HandshakeRefused) as refused:
            ws_connect(daemon, **kwargs)
        assert refused.value.status == status, (kwargs, refused.value)
        assert refused.value.headers["connection"] == "close"
        if body:
            assert refused.value.body.decode() == body + "\n"
    # the origin check ignores case; no Origin header (not a browser) is allowed
    for origin in ("HTTPS://APP.example.com", None):
        ws = ws_connect(daemon, path="/stomp", origin=origin, protocols=("v11.stomp",))
        assert ws.headers["sec-websocket-protocol"] == "v11.stomp"
        stomp_connect_11(ws)
        ws.close()
    daemon.wait_log(r"WebSocket upgrade refused with HTTP 403: origin "
                    r"\"https://evil.example.com\" is not in websocket.origins")


def stomp_connect_11(ws):
    ws.send_text("CONNECT\naccept-version:1.1\nhost:/\nheart-beat:0,0\n\n\0")
    (connected,) = ws.stomp_frames(1)
    assert connected.startswith("CONNECTED\nversion:1.1\n"), connected


def test_ping_is_answered_and_stomp_frames_cross_transports(kbridged_factory, bootstrap):
    """A ping gets a pong with its payload; a STOMP frame split over two
    WebSocket messages, or two frames in one, are read like TCP bytes; a
    stomp.py client on the TCP listener and the WebSocket one share a topic."""
    daemon = start(kbridged_factory, ws_config(bootstrap))
    ws = ws_connect(daemon, protocols=("v12.stomp", "v11.stomp", "v10.stomp"))
    assert ws.headers["sec-websocket-protocol"] == "v12.stomp"
    ws.send_frame(PING, b"are you there")
    assert ws.recv_frame() == (True, PONG, b"are you there")
    stomp_connect(ws)
    ws.send_text("SUBSCRIBE\nid:0\ndestination:/topic/news\n")
    ws.send_text("receipt:s\n\n\0")
    assert ws.stomp_frames(1) == ["RECEIPT\nreceipt-id:s\n\n"]
    tcp = Client(daemon)
    tcp.send("/topic/news", "from tcp", receipt="t1")
    tcp.wait_receipt("t1")
    ws.send_text("SEND\ndestination:/topic/news\n\nfrom ws 1\0SEND\ndestination:/topic/news\n"
                 "receipt:w\n\nfrom ws 2\0")
    frames = ws.stomp_frames(4)
    messages = [f for f in frames if f.startswith("MESSAGE")]
    bodies = [m.rsplit("\n\n", 1)[1] for m in messages]
    assert sorted(bodies) == ["from tcp", "from ws 1", "from ws 2"]  # partitions: any order
    assert bodies.index("from ws 1") < bodies.index("from ws 2")  # one session, one partition
    assert "RECEIPT\nreceipt-id:w\n\n" in frames
    # the server's data messages are text frames (valid UTF-8 here)
    ws.send_text("SEND\ndestination:/topic/news\nreceipt:u\n\n\u00e9t\u00e9\0")
    nuls = 0
    while nuls < 2:
        _, opcode, payload = ws.recv_frame()
        assert opcode == TEXT
        nuls += payload.count(b"\0")
    tcp.close()
    # the close handshake: our close is echoed and the connection ends
    ws.send_frame(CLOSE, b"\x03\xe8bye")
    frames, payload = ws.recv_until_closed()
    assert close_code(payload) == 1000
    assert ws.sock.recv(1) == b""
    daemon.wait_log(r"connection closed \(closed by the client\); user anonymous")


def test_message_over_max_message_size_gets_close_1009(kbridged_factory, bootstrap):
    daemon = start(kbridged_factory, ws_config(bootstrap, max_message_size="4KiB"))
    ws = ws_connect(daemon)
    stomp_connect(ws)
    ws.send_frame(BINARY, b"SEND\ndestination:/topic/big\n\n" + b"x" * 5000 + b"\0")
    frames, payload = ws.recv_until_closed()
    assert frames == []
    assert close_code(payload) == 1009
    daemon.wait_log(r"WebSocket message over websocket.max_message_size \(close 1009\)")
    # a message of exactly the limit still passes
    ws = ws_connect(daemon)
    stomp_connect(ws)
    body = "y" * (4096 - len("SEND\ndestination:/topic/big\nreceipt:r\n\n") - 1)
    ws.send_text(f"SEND\ndestination:/topic/big\nreceipt:r\n\n{body}\0")
    assert ws.stomp_frames(1) == ["RECEIPT\nreceipt-id:r\n\n"]
    ws.close()


def test_upgrade_that_never_completes_is_closed_after_handshake_timeout(
        kbridged_factory, bootstrap):
    config = ws_config(bootstrap)
    config["limits"] = {"handshake_timeout": "1s"}
    daemon = start(kbridged_factory, config)
    host, port = daemon.host_port("web")
    idle = socket.create_connection((host, port))
    partial = socket.create_connection((host, port))
    partial.sendall(b"GET /ws HTTP/1.1\r\nHost: x\r\n")  # never finished
    for sock in (idle, partial):
        sock.settimeout(60)  # only guards against a hang: the server must close first
        assert sock.recv(1024) == b""
        sock.close()
    daemon.wait_log(r"no WebSocket upgrade within limits.handshake_timeout")
    wait_for(lambda: metrics(daemon).get('kbridge_connections{protocol="stomp"}') == 0, 15,
             "both connections gone")


def test_websocket_listener_with_two_protocols_is_refused_at_start(tmp_path, bootstrap):
    from conftest import KBRIDGED
    import yaml
    config = ws_config(bootstrap)
    config["listeners"]["web"]["protocols"] = ["stomp", "amqp"]
    path = tmp_path / "k.yaml"
    path.write_text(yaml.safe_dump(config))
    done = subprocess.run([KBRIDGED, "-c", str(path)], capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    assert ("listeners.web.transport: a websocket listener serves exactly one client protocol "
            "(it lists 2)") in done.stderr + done.stdout


def rss_kib(daemon):
    with open(f"/proc/{daemon.proc.pid}/status") as f:
        return int(re.search(r"^VmRSS:\s+(\d+) kB", f.read(), re.M).group(1))



def test_slow_loris_upgrades_are_closed_and_rss_stays_flat(kbridged_factory, bootstrap):
    """Rounds of 200 connections that send half an upgrade request, a byte at
    a time, and never finish: each is closed after limits.handshake_timeout,
    and after a warm-up round RSS does not grow."""
    config = ws_config(bootstrap)
    config["limits"] = {"handshake_timeout": "1s"}
    daemon = start(kbridged_factory, config)
    host, port = daemon.host_port("web")

    def round_of(count):
        socks = []
        for _ in range(count):
            sock = socket.create_connection((host, port))
            sock.sendall(b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: webso")
            socks.append(sock)
        for sock in socks:
            sock.sendall(b"c")  # one more byte: still not a request
        for sock in socks:
            sock.settimeout(60)  # only guards against a hang
            try:
                assert sock.recv(1024) == b""
            except ConnectionResetError:
                pass
            sock.close()
        wait_for(lambda: metrics(daemon).get('kbridge_connections{protocol="stomp"}') == 0, 30,
                 "every connection freed")

    round_of(200)  # warm-up: allocator arenas, buffers
    before = rss_kib(daemon)
    round_of(200)
    round_of(200)
    after = rss_kib(daemon)
    print(f"\nVmRSS after the warm-up: {before} KiB; after 400 more slow upgrades: {after} KiB "
          f"({after - before:+d} KiB)")
    assert daemon.proc.poll() is None
    if under_sanitizer(daemon):
        print("sanitizer build (ASan or TSan): RSS growth not asserted")
        return
    assert after - before < 2048, f"RSS grew by {after - before} KiB"
