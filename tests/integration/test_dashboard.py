# SPDX-License-Identifier: Apache-2.0
"""The web dashboard under /ui/ (issue 18 item 3, docs/operations.md
"Dashboard"): served from http.ui_dir behind the admin API's HTTP basic
authentication, and loaded in headless Chromium (Chrome DevTools Protocol
over a websocket, tests/integration/cdp.py) against a live kbridged with
STOMP traffic: the numbers the page shows must equal what the admin API
answers at the same moment. Screenshots are kept (tmp dir, and
$KBRIDGE_ARTIFACTS when set; docs/testing.md)."""

import base64
import os
import shutil
import ssl
import urllib.error
import urllib.request
import uuid

import pytest

from cdp import Chromium, keep_artifact
from conftest import ADMIN, SRCDIR, base_config, user_config, wait_for, with_admin
from stomp_util import Client
from test_tls import pki, tls_of  # noqa: F401 (pki: the test CA fixture)

MONITOR = ("watcher", "watch-secret")
PLAIN = ("plain", "plain-secret")
UI_DIR = os.path.join(SRCDIR, "ui")


def uniq():
    return uuid.uuid4().hex[:8]


def dashboard_config(bootstrap, ui_dir=UI_DIR):
    config = with_admin(base_config(bootstrap, queues={"linger": "0s"}))
    config["auth"]["users"] += [
        user_config(MONITOR[0], MONITOR[1], ["monitoring"]),
        user_config(PLAIN[0], PLAIN[1], consume=[".*"], publish=[".*"]),
    ]
    config["http"] = {"ui_dir": ui_dir}
    return config


@pytest.fixture
def daemon(kbridged_factory, bootstrap):
    return kbridged_factory(dashboard_config(bootstrap))


def raw_get(daemon, path, auth=None, method="GET"):
    """(status, headers, body bytes) of one request, redirects not followed."""
    host, port = daemon.host_port("http")

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args, **kwargs):
            return None

    request = urllib.request.Request(f"http://{host}:{port}{path}", method=method)
    if auth:
        token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    opener = urllib.request.build_opener(NoRedirect)
    try:
        with opener.open(request, timeout=10) as r:
            return r.status, r.headers, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()


def test_ui_files_served_with_auth_types_and_no_escape(kbridged_factory, bootstrap, tmp_path):
    # a copy of ui/ with a link out of it and a hidden file
    ui_dir = tmp_path / "ui"
    shutil.copytree(UI_DIR, ui_dir)
    (tmp_path / "secret.txt").write_text("not for the browser")
    os.symlink(tmp_path / "secret.txt", ui_dir / "leak.txt")
    (ui_dir / ".hidden.txt").write_text("hidden")
    daemon = kbridged_factory(dashboard_config(bootstrap, str(ui_dir)))

    status, headers, body = raw_get(daemon, "/ui/")
    assert status == 401
    assert headers["WWW-Authenticate"] == 'Basic realm="kbridge"'
    assert b"index" not in body.lower() and b"<html" not in body.lower()
    assert raw_get(daemon, "/ui/dashboard.js")[0] == 401
    status, headers, _ = raw_get(daemon, "/ui/", auth=(ADMIN[0], "wrong"))
    assert status == 401 and headers["WWW-Authenticate"] == 'Basic realm="kbridge"'
    # a user without an admin tag logs in over the protocols, not here
    status, _, body = raw_get(daemon, "/ui/", auth=PLAIN)
    assert status == 403 and b"tag" in body

    with open(os.path.join(UI_DIR, "index.html"), "rb") as f:
        index = f.read()
    for user in (ADMIN, MONITOR):
        status, headers, body = raw_get(daemon, "/ui/", auth=user)
        assert (status, body) == (200, index)
        assert headers["Content-Type"] == "text/html; charset=utf-8"
        assert headers["Cache-Control"] == "no-cache"
    for name, content_type in (("index.html", "text/html; charset=utf-8"),
                               ("dashboard.css", "text/css; charset=utf-8"),
                               ("dashboard.js", "text/javascript; charset=utf-8")):
        status, headers, body = raw_get(daemon, f"/ui/{name}", auth=MONITOR)
        with open(os.path.join(UI_DIR, name), "rb") as f:
            assert (status, headers["Content-Type"], body) == (200, content_type, f.read())
    status, headers, body = raw_get(daemon, "/ui/dashboard.js", auth=MONITOR, method="HEAD")
    assert status == 200 and body == b""
    # /ui without the slash: to /ui/, so the page's relative names resolve
    status, headers, _ = raw_get(daemon, "/ui")
    assert status == 301 and headers["Location"] == "/ui/"

    for path in ("/ui/leak.txt", "/ui/.hidden.txt", "/ui/../conftest.py", "/ui/%2e%2e/secret.txt",
                 "/ui/%2E%2E%2Fsecret.txt", "/ui/nothing.html", "/ui/a//b", "/ui/index.html%00"):
        status, _, body = raw_get(daemon, path, auth=ADMIN)
        assert status == 404, (path, status, body)
        assert b"not for the browser" not in body and b"hidden" != body.strip()
    status, _, body = raw_get(daemon, "/ui/", auth=ADMIN, method="POST")
    assert status == 405

    # the folder gone: 404 naming it, logged once however often it is asked
    shutil.rmtree(ui_dir)
    for _ in range(3):
        status, _, body = raw_get(daemon, "/ui/", auth=ADMIN)
        assert status == 404 and b"not installed" in body and str(ui_dir).encode() in body
    daemon.wait_log("dashboard not served")
    assert daemon.log().count("dashboard not served") == 1
    # the API and the probes are untouched by it
    assert daemon.api("/api/overview")[0] == 200 and daemon.http("/healthz")[0] == 200


def test_ui_over_https(kbridged_factory, bootstrap, pki):  # noqa: F811
    """The files leave through the TLS listener's bufferevent too (read into
    memory, no sendfile)."""
    config = dashboard_config(bootstrap)
    config["listeners"]["http"]["tls"] = tls_of(pki)
    daemon = kbridged_factory(config, wait_ready=False)
    host, port = daemon.host_port("http")
    context = ssl.create_default_context(cafile=pki["ca"])

    def get(path, auth=None):
        request = urllib.request.Request(f"https://{host}:{port}{path}")
        if auth:
            token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
            request.add_header("Authorization", f"Basic {token}")
        try:
            with urllib.request.urlopen(request, context=context, timeout=10) as r:
                return r.status, r.headers, r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.headers, e.read()

    wait_for(lambda: get("/readyz")[0] == 200, 30, "/readyz over HTTPS")
    status, headers, _ = get("/ui/")
    assert status == 401 and headers["WWW-Authenticate"] == 'Basic realm="kbridge"'
    for name in ("index.html", "dashboard.css", "dashboard.js"):
        with open(os.path.join(UI_DIR, name), "rb") as f:
            assert get(f"/ui/{name}", auth=MONITOR)[::2] == (200, f.read()), name


def page_queues(browser):
    """{name: {field: text}} of the queue table as the page shows it."""
    return browser.evaluate("""
        Object.fromEntries([...document.querySelectorAll('#queue-rows tr')].map(tr => [
          tr.dataset.queue,
          Object.fromEntries([...tr.querySelectorAll('[data-field]')].map(
            td => [td.dataset.field, td.textContent]))]))""")


def test_dashboard_in_chromium_shows_what_the_api_says(daemon, tmp_path):
    a, b = f"dash-a.{uniq()}", f"dash-b.{uniq()}"
    for q in (a, b):
        assert daemon.api(f"/api/queues/%2F/{q}", method="PUT", body={})[0] == 201
    producer, consumer = Client(daemon), Client(daemon)
    profile = tmp_path / "chromium-profile"
    profile.mkdir()
    browser = None
    try:
        for i in range(6):
            producer.send(f"/queue/{a}", f"a{i}", receipt=f"a{i}")
        for i in range(4):
            producer.send(f"/queue/{b}", f"b{i}", receipt=f"b{i}")
        for r in [f"a{i}" for i in range(6)] + [f"b{i}" for i in range(4)]:
            producer.wait_receipt(r)
        consumer.subscribe(f"/queue/{b}", "s1", ack="client-individual", receipt="sub")
        got = consumer.wait_messages(4)
        for frame in got[:2]:
            consumer.ack(frame)

        browser = Chromium(str(profile))
        host, port = daemon.host_port("http")
        origin = f"http://127.0.0.1:{port}"
        assert host == "127.0.0.1"
        # without credentials the browser gets the challenge
        browser.navigate(f"{origin}/ui/")
        challenge = wait_for(lambda: [r for r in browser.responses() if r["url"] == f"{origin}/ui/"],
                             30, "the unauthenticated /ui/ response")[0]
        assert challenge["status"] == 401
        headers = {k.lower(): v for k, v in challenge["headers"].items()}
        assert headers["www-authenticate"] == 'Basic realm="kbridge"'

        # with a monitoring user's credentials: the page, refreshing every second
        browser.set_credentials(*MONITOR)
        browser.navigate(f"{origin}/ui/?refresh=1")
        wait_for(lambda: browser.evaluate("Number(document.body?.dataset.polls || 0)") >= 1,
                 30, "the dashboard's first poll")
        assert browser.evaluate("document.title") == "kbridge dashboard"

        def agree(expected_a):
            shown = page_queues(browser)
            status, listed = daemon.api("/api/queues")
            assert status == 200
            api = {q["name"]: {"messages": str(q["messages"]), "consumers": str(q["consumers"])}
                   for q in listed if q["name"] in (a, b)}
            mine = {name: {k: row.get(k) for k in ("messages", "consumers")}
                    for name, row in shown.items() if name in (a, b)}
            if (mine == api and api.get(a) == {"messages": str(expected_a), "consumers": "0"}
                    and api.get(b, {}).get("consumers") == "1"):
                return shown
            return None

        shown = wait_for(lambda: agree(6), 30,
                         "the page's queue depths and consumers to equal /api/queues")
        # in flight and dead letters: the API's when it has them, else a dash
        listed = {q["name"]: q for q in daemon.api("/api/queues")[1]}
        for field, key in (("in_flight", "messages_unacknowledged"),
                           ("dlq_messages", "kbridge_dlq_messages"),
                           ("dlq_topic", "kbridge_dlq_topic")):
            assert shown[a][field] == str(listed[a].get(key, "–")), (field, shown[a])

        # live: more traffic, and the page follows without a reload
        depth_a = 6
        for round_ in range(5):
            for i in range(3):
                producer.send(f"/queue/{a}", f"more{round_}.{i}", receipt=f"m{round_}.{i}")
            for i in range(3):
                producer.wait_receipt(f"m{round_}.{i}")
            depth_a += 3
            if round_ == 2:
                for frame in got[2:]:
                    consumer.ack(frame)
            wait_for(lambda: agree(depth_a), 30,
                     f"the page to follow /api/queues with {a} at {depth_a}")
        # a sparkline per queue, one point per poll, the newest the depth shown
        history = browser.evaluate(f"""document.querySelector(
            '#queue-rows tr[data-queue="{a}"] svg title').textContent""")
        polls = int(history.split("last ")[1].split(" ")[0])
        assert polls >= 6 and history.endswith(f"max {depth_a}"), history
        points = browser.evaluate(f"""document.querySelector(
            '#queue-rows tr[data-queue="{a}"] svg polyline').getAttribute('points')""")
        assert len(points.split()) == polls

        # overview and connections: as the API says
        def overview_agrees():
            shown = browser.evaluate("""Object.fromEntries([...document.querySelectorAll(
                '#overview [data-field]')].map(e => [e.dataset.field, e.textContent]))""")
            totals = daemon.api("/api/overview")[1]["object_totals"]
            connections = browser.evaluate(
                "[...document.querySelectorAll('#connection-rows tr')].map(t => t.dataset.connection)")
            api_connections = sorted(c["name"] for c in daemon.api("/api/connections")[1])
            ok = (shown["node"] == "test1" and shown["user"] == MONITOR[0]
                  and shown["connections"] == str(totals["connections"]) == "2"
                  and shown["consumers"] == str(totals["consumers"])
                  and sorted(connections) == api_connections and len(api_connections) == 2)
            return ok
        wait_for(overview_agrees, 30, "the overview and connections to equal the API")

        # rates: the page's counter is the node's published total, the rate a number
        def published_counted():
            total = browser.evaluate(
                "document.querySelector('[data-rate=published]').dataset.total")
            rate = browser.evaluate("document.querySelector('[data-rate=published]').textContent")
            return total == "25" and rate != "–"
        wait_for(published_counted, 30, "the published counter (25) and a rate")

        shot = browser.screenshot(str(tmp_path / "dashboard.png"))
        with open(shot, "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n"
        keep_artifact(shot)
        # the browser only ever asked the daemon
        urls = browser.requested_urls()
        assert urls and all(u.startswith(origin + "/") for u in urls), urls
        assert f"{origin}/api/queues" in urls and f"{origin}/ui/dashboard.js" in urls
    finally:
        if browser:
            browser.close()
        producer.close()
        consumer.close()
