"""Local apps for the `lt` client's tests, each in a thread of its own on port 0.

- `ThreadedHttpApp`: `http.server`, HTTP/1.1 keep-alive, optionally over TLS. It is
  deliberately not h11, so the client is tested against a different HTTP implementation
  than its own. It answers JSON describing the request, plus /big?n= and /chunked.
- `websocket_echo_app()`: a WebSocket echo server (the `websockets` library).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import ssl
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.server import Server, ServerConnection, serve

from harness.waiting import IO_TIMEOUT_S

# Bytes in the repeating pattern /big answers with.
_PATTERN = b"0123456789abcdef"


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: ThreadedHttpApp

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        self.server.hosts_seen.append(self.headers.get("Host", ""))
        url = urlsplit(self.path)
        query = parse_qs(url.query)
        if url.path == "/big":
            size = int(query["n"][0])
            payload = (_PATTERN * (size // len(_PATTERN) + 1))[:size]
            self._send(200, payload, "application/octet-stream")
            return
        if url.path == "/chunked":
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for part in (b"hello ", b"chunked ", b"world"):
                self.wfile.write(b"%x\r\n%s\r\n" % (len(part), part))
            self.wfile.write(b"0\r\n\r\n")
            return
        info = {
            "method": self.command,
            "path": self.path,
            "host": self.headers.get("Host"),
            "forwarded_for": self.headers.get("X-Forwarded-For"),
            "length": len(body),
            "sha256": hashlib.sha256(body).hexdigest(),
            "body_start": body[:200].decode("latin-1"),
        }
        self._send(200, json.dumps(info).encode(), "application/json")

    def _send(self, status: int, payload: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)

    do_GET = do_POST = do_PUT = do_HEAD = _answer


class ThreadedHttpApp(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, port: int = 0, ssl_context: ssl.SSLContext | None = None) -> None:
        super().__init__(("127.0.0.1", port), _Handler)
        self.hosts_seen: list[str] = []
        if ssl_context is not None:
            self.socket = ssl_context.wrap_socket(self.socket, server_side=True)
        self.port = self.server_address[1]
        self._thread = threading.Thread(target=self.serve_forever, daemon=True)

    def start(self) -> ThreadedHttpApp:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.shutdown()
        self.server_close()
        self._thread.join(5)


@contextlib.contextmanager
def websocket_echo_app() -> Iterator[int]:
    """A WebSocket echo server on a port of its own; yields the port."""

    async def echo(connection: ServerConnection) -> None:
        async for message in connection:
            await connection.send(message)

    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()

    async def start() -> Server:
        return await serve(echo, "127.0.0.1", 0)

    server = asyncio.run_coroutine_threadsafe(start(), loop).result(IO_TIMEOUT_S)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:

        async def stop() -> None:
            server.close()
            await server.wait_closed()

        asyncio.run_coroutine_threadsafe(stop(), loop).result(IO_TIMEOUT_S)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(IO_TIMEOUT_S)
        loop.close()
