"""RELAY_METRICS_BIND: a listener of its own that serves only `GET /metrics`, without a token.

Meant for an address only the monitoring network reaches (127.0.0.1, a private interface):
no token, so no secret to hand Prometheus, and nothing of the site behind it. It runs on the
relay's event loop (an asyncio server); its socket is bound before the relay starts, so an
address it cannot have stops the start with one line (`bind`). Each connection carries one
request: its head must arrive whole within protocol.METRICS_HEAD_TIMEOUT_S and
METRICS_MAX_HEAD_BYTES (else 408 or 431), anything but `GET` or `HEAD` of METRICS_PATH is
refused (405, 404), and the answer is written with a deadline, then the connection closes.
At most METRICS_MAX_CONNECTIONS are served at once (and for a moment one more per connection
being dropped): when full, a new connection drops the oldest that has not sent its head yet,
so stalled connections cannot keep a scraper out; with none such, it is closed at once.
"""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import Callable

from relay import metrics
from relay.protocol import (
    METRICS_HEAD_TIMEOUT_S,
    METRICS_MAX_CONNECTIONS,
    METRICS_MAX_HEAD_BYTES,
    METRICS_PATH,
    METRICS_WRITE_TIMEOUT_S,
)

_REASONS = {
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    408: "Request Timeout",
    431: "Request Header Fields Too Large",
}


def parse_bind(value: str) -> tuple[str, int]:
    """`HOST:PORT` (IPv6 as `[::1]:9100`) -> (host, port); tunnelsite/settings.py checked it."""
    host, _, port = value.rpartition(":")
    return host.strip("[]"), int(port)


def bind(value: str) -> socket.socket:
    """A listening socket on RELAY_METRICS_BIND (OSError when the address cannot be had)."""
    host, port = parse_bind(value)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen()
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


def where(sock: socket.socket) -> str:
    """The URL the listener serves metrics at (the port actually bound: 0 picks one)."""
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}{METRICS_PATH}"


def _answer(status: int, body: bytes, content_type: str, head_only: bool = False) -> bytes:
    lines = [
        f"HTTP/1.1 {status} {_REASONS[status]}",
        f"Content-Type: {content_type}",
        f"Content-Length: {len(body)}",
        "Cache-Control: no-store",
        "Connection: close",
    ]
    if status == 405:
        lines.append("Allow: GET, HEAD")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + (b"" if head_only else body)


def _refusal(status: int, message: str) -> bytes:
    return _answer(status, json.dumps({"message": message}).encode(), "application/json")


def respond(head: bytes, exposition: Callable[[], bytes]) -> bytes:
    """The whole answer to one request head (sans-IO: tests feed it heads)."""
    try:
        method, target, version = head.split(b"\r\n", 1)[0].split(b" ")
    except ValueError:  # not three words
        version = b""
    if not version.startswith(b"HTTP/1."):
        return _refusal(400, "Send an HTTP/1.1 request: GET /metrics.")
    path = target.split(b"?", 1)[0]
    if path != METRICS_PATH.encode():
        return _refusal(404, f"This listener serves only {METRICS_PATH}.")
    if method not in (b"GET", b"HEAD"):
        return _refusal(405, f"Use GET {METRICS_PATH}.")
    return _answer(200, exposition(), metrics.CONTENT_TYPE, head_only=method == b"HEAD")


class MetricsListener:
    """The server on the bound socket; `start` on the relay's loop, `close` at the stop."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.url = where(sock)
        self.server: asyncio.Server | None = None
        self.open = 0  # connections being served now
        # Those still waiting for their head, oldest first: the ones a full listener drops.
        self.waiting: dict[asyncio.StreamWriter, None] = {}

    async def start(self) -> None:
        self.server = await asyncio.start_server(
            self._serve, sock=self.sock, limit=METRICS_MAX_HEAD_BYTES
        )

    def close(self) -> None:
        if self.server is not None:
            self.server.close()
            self.server = None
        else:
            self.sock.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.open >= METRICS_MAX_CONNECTIONS:
            # Full: the oldest connection that has not sent its head yet makes room (a
            # scraper sends its head at once, so only stalled ones wait: a flood of them
            # cannot keep Prometheus out); with none, this one is closed at once.
            if not self.waiting:
                writer.transport.abort()
                return
            oldest = next(iter(self.waiting))
            del self.waiting[oldest]
            oldest.transport.abort()  # its own task ends and frees its count
        self.open += 1
        self.waiting[writer] = None
        try:
            head, refusal = await _read(reader)
            self.waiting.pop(writer, None)
            writer.write(refusal if refusal is not None else respond(head, metrics.text))
            async with asyncio.timeout(METRICS_WRITE_TIMEOUT_S):
                await writer.drain()
        except (TimeoutError, ConnectionError):
            writer.transport.abort()
        finally:
            writer.close()  # flushes what drain left buffered, within the same deadline
            try:
                async with asyncio.timeout(METRICS_WRITE_TIMEOUT_S):
                    await writer.wait_closed()
            except (TimeoutError, ConnectionError):
                writer.transport.abort()
            finally:
                self.waiting.pop(writer, None)
                self.open -= 1


async def _read(reader: asyncio.StreamReader) -> tuple[bytes, bytes | None]:
    """The request head, or b"" and the refusal to send instead."""
    try:
        async with asyncio.timeout(METRICS_HEAD_TIMEOUT_S):
            return await reader.readuntil(b"\r\n\r\n"), None
    except TimeoutError:
        return b"", _refusal(408, f"Send the whole request within {METRICS_HEAD_TIMEOUT_S:g} s.")
    except asyncio.LimitOverrunError:
        return b"", _refusal(431, f"The request head is over {METRICS_MAX_HEAD_BYTES} bytes.")
    except asyncio.IncompleteReadError:
        return b"", _refusal(400, "The request ended before its head did.")
