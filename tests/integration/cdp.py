# SPDX-License-Identifier: Apache-2.0
"""Headless Chromium driven over the Chrome DevTools Protocol on a
websocket (python3-websocket), for the dashboard tests (test_dashboard*.py).

Chromium runs with `--headless=new --no-sandbox --disable-gpu
--user-data-dir=<tmp>` and `--remote-debugging-port=0` (the port it picked is
read from DevToolsActivePort in the profile), in its own process group, which
close() kills. Every host name but 127.0.0.1 resolves to nothing
(--host-resolver-rules) and the background services that would call out are
off, so the browser only ever loads the loopback URLs a test gives it; the
tests also assert that every request a page made went to the daemon's
origin. Missing chromium or python3-websocket fails with the package to
install (packaging/install-deps.sh --test installs both), never skips."""

import base64
import json
import os
import shutil
import signal
import subprocess
import time

from conftest import wait_for

try:
    import websocket  # python3-websocket
except ImportError:  # pragma: no cover - reported by require_browser()
    websocket = None


def require_browser():
    """Fail (not skip) with a clear message when the browser or the
    DevTools client is missing."""
    missing = []
    if not shutil.which("chromium"):
        missing.append("chromium (the browser)")
    if websocket is None:
        missing.append("python3-websocket (the DevTools protocol client)")
    if missing:
        raise AssertionError("the dashboard tests need " + " and ".join(missing) +
                             ": run packaging/install-deps.sh --test (Debian packages "
                             "chromium python3-websocket)")


class Chromium:
    """One headless Chromium and one page (a target attached in flat mode)."""

    def __init__(self, profile, width=1280, height=1000):
        require_browser()
        self.profile = profile
        self.events = []
        self.next_id = 0
        self.ws = None
        args = ["chromium", "--headless=new", "--no-sandbox", "--disable-gpu",
                f"--user-data-dir={profile}", "--remote-debugging-address=127.0.0.1",
                "--remote-debugging-port=0", "--no-first-run", "--no-default-browser-check",
                "--disable-dev-shm-usage", "--disable-background-networking",
                "--disable-component-update", "--disable-default-apps", "--disable-extensions",
                "--disable-sync", "--metrics-recording-only", "--disable-breakpad",
                "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
                f"--window-size={width},{height}", "about:blank"]
        self.log = open(os.path.join(profile, "chromium.log"), "w")
        self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=self.log, start_new_session=True)
        try:
            port_file = os.path.join(profile, "DevToolsActivePort")
            lines = wait_for(lambda: self._active_port(port_file), 30,
                             "chromium's DevToolsActivePort")
            url = f"ws://127.0.0.1:{int(lines[0])}{lines[1]}"
            # no Origin header: Chromium refuses websocket origins it was not told about
            self.ws = websocket.create_connection(url, timeout=30, suppress_origin=True)
            target = self.call("Target.createTarget", url="about:blank")["targetId"]
            self.session = self.call("Target.attachToTarget", targetId=target,
                                     flatten=True)["sessionId"]
            self.page("Page.enable")
            self.page("Network.enable")
            self.page("Runtime.enable")
        except BaseException:
            self.close()
            raise

    def _active_port(self, path):
        if self.proc.poll() is not None:
            with open(os.path.join(self.profile, "chromium.log")) as f:
                raise AssertionError(f"chromium exited with {self.proc.returncode}: {f.read()}")
        try:
            with open(path) as f:
                lines = f.read().split("\n")
        except FileNotFoundError:
            return None
        return lines if len(lines) >= 2 and lines[0].isdigit() and lines[1] else None

    def call(self, method, session=None, timeout=60, **params):
        """Send one command and wait for its answer; events are kept."""
        self.next_id += 1
        wanted = self.next_id
        message = {"id": wanted, "method": method, "params": params}
        if session:
            message["sessionId"] = session
        self.ws.send(json.dumps(message))
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"DevTools {method}: no answer within {timeout}s")
            self.ws.settimeout(left)
            reply = json.loads(self.ws.recv())
            if reply.get("id") == wanted:
                if "error" in reply:
                    raise AssertionError(f"DevTools {method}: {reply['error']}")
                return reply.get("result", {})
            if "method" in reply:
                self.events.append(reply)

    def page(self, method, **params):
        """A command to the page's session."""
        return self.call(method, session=self.session, **params)

    def pump(self):
        """Read the events that arrived meanwhile (a cheap round trip)."""
        self.call("Browser.getVersion")

    def set_credentials(self, user, password):
        token = base64.b64encode(f"{user}:{password}".encode()).decode()
        self.page("Network.setExtraHTTPHeaders", headers={"Authorization": f"Basic {token}"})

    def navigate(self, url):
        assert url.startswith("http://127.0.0.1:"), url
        self.page("Page.navigate", url=url)

    def evaluate(self, expression):
        """The value of a JavaScript expression in the page (JSON-able)."""
        result = self.page("Runtime.evaluate", expression=expression, returnByValue=True,
                           awaitPromise=True)
        if "exceptionDetails" in result:
            raise AssertionError(f"page script failed: {result['exceptionDetails']}")
        return result["result"].get("value")

    def responses(self):
        """Network.responseReceived events so far, as their response objects."""
        self.pump()
        return [e["params"]["response"] for e in self.events
                if e["method"] == "Network.responseReceived"]

    def requested_urls(self):
        self.pump()
        return [e["params"]["request"]["url"] for e in self.events
                if e["method"] == "Network.requestWillBeSent"]

    def screenshot(self, path):
        data = self.page("Page.captureScreenshot", format="png", captureBeyondViewport=True)
        with open(path, "wb") as f:
            f.write(base64.b64decode(data["data"]))
        return path

    def close(self):
        """Close the websocket and kill chromium's whole process group."""
        try:
            if self.ws:
                self.ws.close()
        except Exception:
            pass
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.proc.wait()
        self.log.close()


def keep_artifact(path):
    """Copy a screenshot to $KBRIDGE_ARTIFACTS when it is set (docs/testing.md)."""
    target = os.environ.get("KBRIDGE_ARTIFACTS")
    if target:
        os.makedirs(target, exist_ok=True)
        shutil.copy(path, os.path.join(target, os.path.basename(path)))
