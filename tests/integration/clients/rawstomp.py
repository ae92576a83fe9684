# SPDX-License-Identifier: Apache-2.0
"""A STOMP client over a plain socket, for the tests that must send bytes no
library would (malformed frames, silence instead of heart-beats) or must stop
reading on purpose (a slow topic subscriber). It parses what the server
sends (frames with or without content-length, heart-beat EOLs) and tells
when the server has closed the connection."""

import socket
import time

ESCAPES = {"n": "\n", "c": ":", "\\": "\\", "r": "\r"}


def frame(command, headers=(), body=b""):
    """Bytes of one frame. headers: dict or (name, value) pairs, written as
    given (no escaping); body: bytes or str. No content-length is added."""
    if isinstance(headers, dict):
        headers = list(headers.items())
    if isinstance(body, str):
        body = body.encode()
    head = command + "\n" + "".join(f"{name}:{value}\n" for name, value in headers) + "\n"
    return head.encode() + body + b"\0"


def unescape(value):
    out, i = [], 0
    while i < len(value):
        if value[i] == "\\" and i + 1 < len(value) and value[i + 1] in ESCAPES:
            out.append(ESCAPES[value[i + 1]])
            i += 2
        else:
            out.append(value[i])
            i += 1
    return "".join(out)


class Frame:
    def __init__(self, command, headers, body):
        self.command = command
        self.headers = headers  # {name: first value}
        self.body = body        # bytes

    def __repr__(self):
        return f"Frame({self.command!r}, {self.headers!r}, {self.body[:80]!r})"


class ServerClosed(Exception):
    pass


class RawStomp:
    """One socket to the STOMP listener. `version` is what escaping to undo
    in received headers ("1.0" until CONNECTED says otherwise)."""

    def __init__(self, daemon, rcvbuf=None, timeout=10):
        host, port = daemon.host_port("stomp")
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf:
            # Before connect, so that the advertised window stays small.
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(timeout)
        self.sock.connect((host, port))
        self.buffer = b""
        self.version = "1.0"
        self.closed = False
        self.heartbeats = 0  # EOLs received between frames

    # ---- sending ---------------------------------------------------------------
    def send(self, data):
        self.sock.sendall(data)

    def send_frame(self, command, headers=(), body=b""):
        self.send(frame(command, headers, body))

    def connect(self, headers=None, version="1.2"):
        """CONNECT and wait for CONNECTED; returns it."""
        h = {"accept-version": version, "host": "localhost"}
        h.update(headers or {})
        self.send_frame("CONNECT", h)
        reply = self.next_frame()
        assert reply.command == "CONNECTED", reply
        self.version = reply.headers.get("version", "1.0")
        return reply

    # ---- receiving --------------------------------------------------------------
    def _fill(self, deadline):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("no data from the server in time")
        self.sock.settimeout(remaining)
        try:
            data = self.sock.recv(65536)
        except socket.timeout:
            raise TimeoutError("no data from the server in time") from None
        except ConnectionResetError:
            data = b""
        if not data:
            self.closed = True
            raise ServerClosed()
        self.buffer += data

    def _parse(self):
        """One frame from the buffer, or None when incomplete."""
        while self.buffer[:1] in (b"\n", b"\r"):
            if self.buffer.startswith(b"\r\n"):
                self.buffer = self.buffer[2:]
            elif self.buffer.startswith(b"\n"):
                self.buffer = self.buffer[1:]
            elif len(self.buffer) == 1:  # a lone \r: wait for its \n
                return None
            else:
                raise AssertionError(f"bad EOL from the server: {self.buffer[:20]!r}")
            self.heartbeats += 1
        end = self.buffer.find(b"\n\n")
        end_crlf = self.buffer.find(b"\r\n\r\n")
        if end < 0 and end_crlf < 0:
            return None
        if end < 0 or (0 <= end_crlf < end):
            head, body_start = self.buffer[:end_crlf], end_crlf + 4
        else:
            head, body_start = self.buffer[:end], end + 2
        lines = head.decode().replace("\r\n", "\n").split("\n")
        command, headers = lines[0], {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            if self.version != "1.0" and command != "CONNECTED":
                name, value = unescape(name), unescape(value)
            headers.setdefault(name, value)
        if "content-length" in headers:
            length = int(headers["content-length"])
            if len(self.buffer) < body_start + length + 1:
                return None
            body = self.buffer[body_start:body_start + length]
            assert self.buffer[body_start + length:body_start + length + 1] == b"\0"
            self.buffer = self.buffer[body_start + length + 1:]
        else:
            nul = self.buffer.find(b"\0", body_start)
            if nul < 0:
                return None
            body = self.buffer[body_start:nul]
            self.buffer = self.buffer[nul + 1:]
        return Frame(command, headers, body)

    def next_frame(self, timeout=10):
        """The next frame; TimeoutError, or ServerClosed when the server closed first."""
        deadline = time.monotonic() + timeout
        while True:
            parsed = self._parse()
            if parsed:
                return parsed
            self._fill(deadline)

    def frames_until_closed(self, timeout=10):
        """Every frame until the server closes the connection (recv returns
        b''); AssertionError when it is still open at the deadline."""
        frames = []
        deadline = time.monotonic() + timeout
        while True:
            parsed = self._parse()
            if parsed:
                frames.append(parsed)
                continue
            try:
                self._fill(deadline)
            except ServerClosed:
                assert not self.buffer.strip(b"\r\n"), f"partial frame at close: {self.buffer!r}"
                return frames
            except TimeoutError:
                raise AssertionError(f"the server did not close the connection within "
                                     f"{timeout}s (frames so far: {frames})") from None

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass
