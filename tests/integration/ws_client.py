# SPDX-License-Identifier: Apache-2.0
"""A minimal RFC 6455 client on the standard library (socket, ssl, hashlib,
base64), for the WebSocket tests (ws:// and, with an SSLContext, wss://): the upgrade request with any headers,
masked frames of any opcode and size, and unmasked frames read back.
Deliberately small: it exists to send what a browser library would refuse
to (a wrong subprotocol, a foreign origin, an oversized message)."""

import base64
import hashlib
import os
import socket
import struct

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

TEXT, BINARY, CLOSE, PING, PONG = 0x1, 0x2, 0x8, 0x9, 0xA


class HandshakeRefused(Exception):
    def __init__(self, status, headers, body):
        super().__init__(f"HTTP {status}: {body!r}")
        self.status = status
        self.headers = headers
        self.body = body


def read_http_response(sock):
    """Read a response head (and a Content-Length body): (status, headers, body)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            raise ConnectionError(f"closed before a full HTTP response: {data!r}")
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0"))
    while len(rest) < length:
        chunk = sock.recv(4096)
        if not chunk:
            break
        rest += chunk
    return status, headers, rest[:length] if length else rest


class WebSocket:
    def __init__(self, sock, headers, leftover=b""):
        self.sock = sock
        self.headers = headers
        self.buffer = leftover

    @classmethod
    def connect(cls, host, port, path="/ws", protocols=("v12.stomp",), origin=None,
                extra_headers=(), key=None, timeout=30, ssl_context=None, server_hostname=None):
        """Open a connection and upgrade it; raises HandshakeRefused on a non-101.
        With an ssl.SSLContext: TLS first (wss), checking the server's
        certificate for server_hostname (default: host)."""
        sock = socket.create_connection((host, port), timeout=timeout)
        if ssl_context is not None:
            sock = ssl_context.wrap_socket(sock, server_hostname=server_hostname or host)
        key = key or base64.b64encode(os.urandom(16)).decode()
        lines = [f"GET {path} HTTP/1.1", f"Host: {host}:{port}", "Upgrade: websocket",
                 "Connection: Upgrade", f"Sec-WebSocket-Key: {key}", "Sec-WebSocket-Version: 13"]
        if protocols:
            lines.append("Sec-WebSocket-Protocol: " + ", ".join(protocols))
        if origin:
            lines.append(f"Origin: {origin}")
        lines += list(extra_headers)
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        status, headers, body = read_http_response(sock)
        if status != 101:
            sock.close()
            raise HandshakeRefused(status, headers, body)
        expected = base64.b64encode(hashlib.sha1((key + GUID).encode()).digest()).decode()
        if headers.get("sec-websocket-accept") != expected:
            sock.close()
            raise AssertionError(f"Sec-WebSocket-Accept {headers.get('sec-websocket-accept')!r}"
                                 f" is not {expected!r}")
        return cls(sock, headers, body)

    def send_frame(self, opcode, payload, fin=True):
        if isinstance(payload, str):
            payload = payload.encode()
        head = bytes([(0x80 if fin else 0) | opcode])
        n = len(payload)
        if n < 126:
            head += bytes([0x80 | n])
        elif n < 65536:
            head += bytes([0x80 | 126]) + struct.pack("!H", n)
        else:
            head += bytes([0x80 | 127]) + struct.pack("!Q", n)
        mask = os.urandom(4)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.sock.sendall(head + mask + masked)

    def send_text(self, text):
        self.send_frame(TEXT, text)

    def _read(self, n):
        while len(self.buffer) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed by the server")
            self.buffer += chunk
        out, self.buffer = self.buffer[:n], self.buffer[n:]
        return out

    def recv_frame(self):
        """One frame: (fin, opcode, payload). Server frames must not be masked."""
        b0, b1 = self._read(2)
        if b1 & 0x80:
            raise AssertionError("the server masked a frame")
        n = b1 & 0x7F
        if n == 126:
            n = struct.unpack("!H", self._read(2))[0]
        elif n == 127:
            n = struct.unpack("!Q", self._read(8))[0]
        return bool(b0 & 0x80), b0 & 0x0F, self._read(n)

    def recv_until_closed(self):
        """Frames until the server's close frame: ([(opcode, payload)], close payload)."""
        frames = []
        while True:
            _, opcode, payload = self.recv_frame()
            if opcode == CLOSE:
                return frames, payload
            frames.append((opcode, payload))

    def stomp_frames(self, count):
        """Read data messages until `count` NUL-terminated STOMP frames arrived
        (heart-beat EOLs dropped): a list of frame texts without the NUL."""
        text = b""
        while text.count(b"\0") < count:
            _, opcode, payload = self.recv_frame()
            if opcode in (TEXT, BINARY):
                text += payload
            elif opcode == CLOSE:
                raise ConnectionError(f"closed by the server: {payload!r} after {text!r}")
        frames = [f.lstrip(b"\r\n") for f in text.split(b"\0")[:count]]
        return [f.decode() for f in frames]

    def close(self):
        self.sock.close()


def close_code(payload):
    return struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else None
