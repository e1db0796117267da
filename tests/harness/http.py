"""A visitor on the relay's public port: raw bytes out, responses parsed with h11."""

from __future__ import annotations

import hashlib
import json
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import h11

from harness.waiting import IO_TIMEOUT_S, poll

# Reads per poll when waiting for a close: a relay still streaming cannot keep one poll busy.
DRAIN_READS = 64


@dataclass
class Answer:
    """One HTTP response as a visitor received it (status 0: none arrived at all)."""

    status: int
    headers: list[tuple[str, str]]
    body: bytes
    complete: bool = True  # False: the connection ended before the response did
    reason: str = ""

    def header(self, name: str) -> str | None:
        name = name.lower()
        for key, value in self.headers:
            if key == name:
                return value
        return None

    def header_names(self) -> set[str]:
        return {key for key, _ in self.headers}

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")


def build_request(
    method: str,
    target: str,
    host: str | None,
    headers: list[tuple[str, str]] | None = None,
    body: bytes | None = None,
) -> bytes:
    lines = [f"{method} {target} HTTP/1.1"]
    if host is not None:
        lines.append(f"Host: {host}")
    for name, value in headers or []:
        lines.append(f"{name}: {value}")
    names = {name.lower() for name, _ in headers or []}
    if body is not None and "content-length" not in names and "transfer-encoding" not in names:
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + (body or b"")


class Visitor:
    """A raw TCP connection to the relay's public port; responses parsed with h11."""

    def __init__(
        self, port: int, host: str | None = None, source: str | None = None, timeout: float = 10
    ) -> None:
        self.port = port
        self.host = host
        self.timeout = timeout
        # An IPv6 source (::1) reaches a dual-stack relay over IPv6.
        self.sock = socket.create_connection(
            ("::1" if source and ":" in source else "127.0.0.1", port),
            timeout=timeout,
            source_address=(source, 0) if source else None,
        )
        self._buffer = b""
        self._eof = False

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def request(
        self,
        method: str,
        target: str,
        headers: list[tuple[str, str]] | None = None,
        body: bytes | None = None,
    ) -> Answer:
        self.send(build_request(method, target, self.host, headers, body))
        return self.response(method)

    def _recv(self) -> bytes:
        if self._buffer:
            data, self._buffer = self._buffer, b""
            return data
        if self._eof:
            return b""
        try:
            data = self.sock.recv(262144)
        except (ConnectionResetError, BrokenPipeError):
            data = b""
        if not data:
            self._eof = True
        return data

    def response(self, method: str = "GET") -> Answer:
        """Read one response to a request made with `method`; skip 1xx answers."""
        conn = h11.Connection(h11.CLIENT)
        conn.send(h11.Request(method=method, target="/", headers=[("Host", "x")]))
        conn.send(h11.EndOfMessage())
        status, reason, headers, body = 0, "", [], []
        while True:
            try:
                event = conn.next_event()
            except h11.RemoteProtocolError:
                # Cut mid-response, or closed before any response (status stays 0).
                return Answer(status, headers, b"".join(body), False, reason)
            if event is h11.NEED_DATA:
                data = self._recv()
                conn.receive_data(data)
                continue
            if isinstance(event, h11.Response):
                status, reason = event.status_code, event.reason.decode("latin-1")
                headers = [(n.decode("latin-1"), v.decode("latin-1")) for n, v in event.headers]
            elif isinstance(event, h11.Data):
                body.append(bytes(event.data))
            elif isinstance(event, h11.EndOfMessage):
                self._buffer = bytes(conn.trailing_data[0]) + self._buffer
                return Answer(status, headers, b"".join(body), True, reason)
            elif isinstance(event, h11.ConnectionClosed):
                return Answer(status, headers, b"".join(body), False, reason)

    def read_some(self, timeout: float | None = None) -> bytes:
        """Whatever bytes arrive next (b"" at end of stream)."""
        self.sock.settimeout(timeout or self.timeout)
        try:
            return self._recv()
        finally:
            self.sock.settimeout(self.timeout)

    def read_until(
        self, done: Callable[[bytes], object], received: bytes = b"", timeout: float = IO_TIMEOUT_S
    ) -> bytes:
        """Read on after `received` until `done(all read so far)`; the test fails if the
        stream ends first, or no byte arrives for `timeout` seconds (a stream, read raw)."""
        while not done(received):
            chunk = self.read_some(timeout)
            assert chunk, f"the stream ended early: {received[-2000:]!r}"
            received += chunk
        return received

    def read_until_closed(self) -> bytes:
        """Every byte still to come, until the relay closes the connection (the test fails
        if it stays open `timeout` seconds with nothing more)."""
        received = b""
        while chunk := self._recv():
            received += chunk
        return received

    def is_closed(self, timeout: float = IO_TIMEOUT_S) -> bool:
        """True once the relay has closed this connection (all data read and dropped)."""
        self._buffer = b""
        return bool(poll(self._closed_now, timeout))

    def _closed_now(self) -> bool:
        """Drop what has arrived, without waiting; True at the end of the stream."""
        self.sock.settimeout(0)
        try:
            for _ in range(DRAIN_READS):
                if not self.sock.recv(65536):
                    return True
        except (ConnectionResetError, BrokenPipeError):
            return True
        except BlockingIOError:
            return False
        finally:
            self.sock.settimeout(self.timeout)
        return False

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> Visitor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def send_raw(
    port: int,
    data: bytes,
    *,
    method: str | None = None,
    source: str | None = None,
    timeout: float = IO_TIMEOUT_S,
) -> Answer:
    """Open a connection, send `data` as is, read one response, close."""
    if method is None:
        method = data.split(b" ", 1)[0].decode("latin-1") or "GET"
    with Visitor(port, source=source, timeout=timeout) as visitor:
        visitor.send(data)
        return visitor.response(method)


# Per socket read of a paced transfer: a transfer under a bandwidth limit still moves each second.
TRANSFER_TIMEOUT_S = 30.0


def timed_download(port: int, host: str, size: int) -> tuple[float, str, int]:
    """`GET /bytes/<size>` (the local app's pattern) with `host` on the relay at `port`, read
    to its end: (seconds, sha256, length) as the visitor read it."""
    started = time.monotonic()
    digest, length = hashlib.sha256(), 0
    conn = h11.Connection(h11.CLIENT)
    with socket.create_connection(("127.0.0.1", port), timeout=TRANSFER_TIMEOUT_S) as sock:
        request = h11.Request(method="GET", target=f"/bytes/{size}", headers=[("Host", host)])
        sock.sendall(conn.send(request) + conn.send(h11.EndOfMessage()))
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                conn.receive_data(sock.recv(256 * 1024))
            elif isinstance(event, h11.Response):
                assert event.status_code == 200, event
            elif isinstance(event, h11.Data):
                digest.update(event.data)
                length += len(event.data)
            elif isinstance(event, h11.EndOfMessage):
                break
            else:
                raise AssertionError(f"unexpected {event!r}")
    return time.monotonic() - started, digest.hexdigest(), length
