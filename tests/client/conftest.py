"""Test doubles for the `lt` client's tests, all on real sockets on port 0.

- `RelayDouble` speaks exactly the relay's contract (see its docstring).
- `LocalApp` is the local app: `http.server` in a thread (not h11, so the client is tested
  against another HTTP implementation than its own), optionally over TLS.
- `LtProcess` runs the real `lt` command (`python -m client.cli`) and collects its output.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import re
import secrets
import ssl
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import parse_qs, urlsplit

import h11
import pytest
import wsproto
import wsproto.events as ws_events

T = TypeVar("T")
SUBDOMAIN_RE = re.compile(r"^(?:[a-z0-9][a-z0-9\-]{4,63}[a-z0-9]|[a-z0-9]{4,63})$")
WAIT_S = 10.0


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass(eq=False)
class PoolSocket:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    conn: h11.Connection = field(default_factory=lambda: h11.Connection(h11.CLIENT))
    watcher: asyncio.Task[None] | None = None
    requests: int = 0


class TunnelDouble:
    def __init__(self, relay: RelayDouble, name: str, owner: str, ip: str) -> None:
        self.relay = relay
        self.name = name
        self.owner = owner
        self.ip = ip
        self.sockets: set[PoolSocket] = set()
        self.idle: deque[PoolSocket] = deque()
        self.changed = asyncio.Condition()
        self.server: asyncio.Server | None = None
        self.port = 0

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
        for sock in list(self.sockets):
            sock.writer.close()
        self.sockets.clear()
        self.idle.clear()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")[0]
        self.relay.pool_connections += 1
        full = len(self.sockets) >= self.relay.max_conn_count
        if full or peer != self.ip or self.relay.close_pool_at_once:
            self.relay.refused_sockets += 1
            writer.close()
            return
        sock = PoolSocket(reader, writer)
        self.sockets.add(sock)
        await self._make_idle(sock)

    async def _make_idle(self, sock: PoolSocket) -> None:
        sock.watcher = asyncio.create_task(self._watch_idle(sock))
        self.idle.append(sock)
        async with self.changed:
            self.changed.notify_all()

    async def _watch_idle(self, sock: PoolSocket) -> None:
        data = await sock.reader.read(1)
        if data:
            self.relay.violations.append(f"unsolicited bytes on an idle socket: {data!r}")
        await self._drop(sock)

    async def _drop(self, sock: PoolSocket) -> None:
        sock.writer.close()
        self.sockets.discard(sock)
        with contextlib.suppress(ValueError):
            self.idle.remove(sock)
        async with self.changed:
            self.changed.notify_all()

    async def take(self) -> PoolSocket:
        async with asyncio.timeout(WAIT_S):
            async with self.changed:
                await self.changed.wait_for(lambda: bool(self.idle))
        sock = self.idle.pop()  # most recently used first, like a keep-alive pool
        assert sock.watcher is not None
        sock.watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sock.watcher
        return sock

    async def wait_for_sockets(self, count: int) -> None:
        async with asyncio.timeout(WAIT_S):
            async with self.changed:
                await self.changed.wait_for(lambda: len(self.idle) >= count)

    def request_headers(self, extra: dict[str, str] | None) -> list[tuple[str, str]]:
        host = f"{self.name}.localhost:{self.relay.port}"
        headers = {
            "Host": host,
            "X-Forwarded-For": "203.0.113.7",
            "X-Forwarded-Proto": "http",
            "X-Forwarded-Host": host,
        }
        headers.update(extra or {})
        return list(headers.items())

    async def exchange(
        self,
        sock: PoolSocket,
        method: str,
        path: str,
        headers: dict[str, str] | None,
        body: bytes,
    ) -> Answer:
        conn = sock.conn
        items = self.request_headers(headers)
        if body or method in ("POST", "PUT"):
            items.append(("Content-Length", str(len(body))))
        sock.requests += 1
        try:
            sock.writer.write(conn.send(h11.Request(method=method, target=path, headers=items)))
            view = memoryview(body)
            for start in range(0, len(body), 64 * 1024):
                sock.writer.write(conn.send(h11.Data(data=bytes(view[start : start + 65536]))))
                await sock.writer.drain()
            sock.writer.write(conn.send(h11.EndOfMessage()))
            await sock.writer.drain()
            answer = await read_answer(conn, sock.reader)
        except BaseException:
            await self._drop(sock)
            raise
        if conn.our_state is h11.DONE and conn.their_state is h11.DONE:
            conn.start_next_cycle()
            await self._make_idle(sock)
        else:
            await self._drop(sock)
        return answer


async def read_answer(conn: h11.Connection, reader: asyncio.StreamReader) -> Answer:
    status, headers, body = 0, {}, bytearray()
    async with asyncio.timeout(WAIT_S):
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                conn.receive_data(await reader.read(65536))
            elif isinstance(event, h11.Response):
                status = event.status_code
                headers = {k.decode(): v.decode() for k, v in event.headers}
            elif isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, h11.EndOfMessage):
                return Answer(status, headers, bytes(body))
            elif isinstance(event, h11.ConnectionClosed):
                raise ConnectionError("the client closed the pool socket mid-answer")


class RelayDouble:
    """Start with `start()`; every public method is called from the test's thread."""

    def __init__(self, max_conn_count: int = 3) -> None:
        self.max_conn_count = max_conn_count
        self.port = 0
        self.registrations: list[Recorded] = []
        self.deletes: list[Recorded] = []
        self.forced: deque[tuple[int, str]] = deque()  # next registration answers
        self.required_token: str | None = None
        self.violations: list[str] = []
        self.refused_sockets = 0
        self.pool_connections = 0  # every pool connection accepted, kept or not
        self.close_pool_at_once = False  # misbehave: close each pool socket on accept
        self.tunnels: dict[str, TunnelDouble] = {}
        self.owners: dict[str, str] = {}  # survives a restart, like the relay's database
        self._server: asyncio.Server | None = None
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def call(self, coro: Coroutine[Any, Any, T], timeout: float = WAIT_S + 5) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    # -- life --------------------------------------------------------------------------

    def start(self, port: int = 0) -> RelayDouble:
        async def start() -> None:
            self._server = await asyncio.start_server(self._serve_api, "127.0.0.1", port)
            self.port = self._server.sockets[0].getsockname()[1]

        self.call(start())
        return self

    def stop(self) -> None:
        """Go down like a crashed relay: listeners closed, every socket dropped."""

        async def stop() -> None:
            if self._server is not None:
                self._server.close()
                self._server = None
            for tunnel in list(self.tunnels.values()):
                await tunnel.close()
            self.tunnels.clear()

        self.call(stop())

    def shutdown(self) -> None:
        self.stop()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()

    # -- what tests use ----------------------------------------------------------------

    def tunnel(self, name: str) -> TunnelDouble:
        return self.tunnels[name]

    def wait_for_sockets(self, name: str, count: int | None = None) -> None:
        async def wait() -> None:
            async with asyncio.timeout(WAIT_S):
                while name not in self.tunnels:
                    await asyncio.sleep(0.02)
            await self.tunnels[name].wait_for_sockets(count or self.max_conn_count)

        self.call(wait())

    def request(
        self,
        name: str,
        method: str = "GET",
        path: str = "/",
        headers: dict[str, str] | None = None,
        body: bytes = b"",
    ) -> Answer:
        async def go() -> Answer:
            tunnel = self.tunnels[name]
            sock = await tunnel.take()
            return await tunnel.exchange(sock, method, path, headers, body)

        return self.call(go())

    def requests_on_one_socket(
        self, name: str, requests: list[tuple[str, str, bytes]]
    ) -> tuple[list[Answer], int]:
        """Send requests one after the other on a single pool socket (keep-alive).
        Returns the answers and how many requests that socket carried."""

        async def go() -> tuple[list[Answer], int]:
            tunnel = self.tunnels[name]
            sock = await tunnel.take()
            answers = []
            for index, (method, path, body) in enumerate(requests):
                answers.append(await tunnel.exchange(sock, method, path, None, body))
                if index < len(requests) - 1:
                    assert sock in tunnel.idle, "the client closed a keep-alive socket"
                    tunnel.idle.remove(sock)
                    assert sock.watcher is not None
                    sock.watcher.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await sock.watcher
            return answers, sock.requests

        return self.call(go())

    def websocket_echo(self, name: str, messages: list[str]) -> tuple[list[str], bool]:
        """Upgrade a pool socket to WebSocket, send messages, collect the echoes.
        Returns the echoes and whether the client then closed the pool socket."""

        async def go() -> tuple[list[str], bool]:
            tunnel = self.tunnels[name]
            sock = await tunnel.take()
            tunnel.sockets.discard(sock)  # an upgraded socket is never reused
            ws = wsproto.WSConnection(wsproto.ConnectionType.CLIENT)
            host = f"{name}.localhost:{self.port}"
            sock.writer.write(ws.send(ws_events.Request(host=host, target="/ws")))
            await sock.writer.drain()
            echoes: list[str] = []
            accepted = False
            async with asyncio.timeout(WAIT_S):
                while not accepted:
                    ws.receive_data(await sock.reader.read(65536))
                    for event in ws.events():
                        if isinstance(event, ws_events.AcceptConnection):
                            accepted = True
                        elif isinstance(event, ws_events.RejectConnection):
                            raise AssertionError(f"upgrade rejected: {event.status_code}")
                for message in messages:
                    sock.writer.write(ws.send(ws_events.TextMessage(data=message)))
                    await sock.writer.drain()
                    parts: list[str] = []
                    finished = False
                    while not finished:
                        for event in ws.events():
                            if isinstance(event, ws_events.TextMessage):
                                parts.append(event.data)
                                finished = event.message_finished
                        if not finished:
                            ws.receive_data(await sock.reader.read(65536))
                    echoes.append("".join(parts))
                sock.writer.write(ws.send(ws_events.CloseConnection(code=1000)))
                await sock.writer.drain()
                while await sock.reader.read(65536):
                    pass  # until the client closes the pool socket
            sock.writer.close()
            async with tunnel.changed:
                tunnel.changed.notify_all()
            return echoes, True

        return self.call(go())

    # -- the API -----------------------------------------------------------------------

    async def _serve_api(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = h11.Connection(h11.SERVER)
        try:
            async with asyncio.timeout(WAIT_S):
                while True:
                    event = conn.next_event()
                    if event is h11.NEED_DATA:
                        conn.receive_data(await reader.read(65536))
                    elif isinstance(event, h11.Request):
                        request = event
                    elif isinstance(event, h11.EndOfMessage):
                        break
                    else:
                        return
            headers = {k.decode().lower(): v.decode() for k, v in request.headers}
            recorded = Recorded(request.method.decode(), request.target.decode(), headers)
            peer = writer.get_extra_info("peername")[0]
            status, payload = await self._answer(recorded, peer)
            body = json.dumps(payload).encode() if payload is not None else b""
            out = [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
            writer.write(conn.send(h11.Response(status_code=status, headers=out)))
            writer.write(conn.send(h11.Data(data=body)) + conn.send(h11.EndOfMessage()))
            await writer.drain()
        except (h11.ProtocolError, OSError, TimeoutError):
            pass
        finally:
            writer.close()

    async def _answer(self, req: Recorded, peer: str) -> tuple[int, Any]:
        path = req.path.split("?")[0]
        match = re.fullmatch(r"/api/tunnels/([^/]+)(/status)?", path)
        if match and req.method == "DELETE" and not match.group(2):
            self.deletes.append(req)
            tunnel = self.tunnels.pop(match.group(1), None)
            if tunnel is None:
                return 404, {"message": "no such tunnel"}
            self.owners.pop(tunnel.name, None)
            await tunnel.close()
            return 204, None
        if match and req.method == "GET" and match.group(2):
            tunnel = self.tunnels.get(match.group(1))
            if tunnel is None:
                return 404, {"message": "no such tunnel"}
            return 200, {"connected_sockets": len(tunnel.sockets)}
        if req.method != "GET":
            return 405, {"message": "method not allowed"}
        self.registrations.append(req)
        if self.forced:
            status, message = self.forced.popleft()
            return status, {"message": message}
        token = req.headers.get("authorization", "")
        if self.required_token and token != f"Bearer {self.required_token}":
            return 401, {"message": "a valid token is required"}
        if req.path == "/?new":
            name = f"test-{secrets.token_hex(3)}"
        else:
            name = path.strip("/")
            if "/" in name or not SUBDOMAIN_RE.match(name):
                return 403, {"message": "Invalid subdomain."}
        owner = token or peer
        if self.owners.get(name, owner) != owner:
            return 409, {"message": f"{name} is taken"}
        old = self.tunnels.pop(name, None)
        if old is not None:
            await old.close()
        tunnel = TunnelDouble(self, name, owner, peer)
        await tunnel.start()
        self.tunnels[name] = tunnel
        self.owners[name] = owner
        return 200, {
            "id": name,
            "port": tunnel.port,
            "max_conn_count": self.max_conn_count,
            "url": f"http://{name}.localhost:{self.port}",
        }


# A small local app for the client's tests: `http.server` in a thread, HTTP/1.1
# keep-alive, optionally over TLS. It is deliberately not h11, so the client is tested
# against a different HTTP implementation than its own.
class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: LocalApp

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
            payload = (b"0123456789abcdef" * (size // 16 + 1))[:size]
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


class LocalApp(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, port: int = 0, ssl_context: ssl.SSLContext | None = None) -> None:
        super().__init__(("127.0.0.1", port), _Handler)
        self.hosts_seen: list[str] = []
        if ssl_context is not None:
            self.socket = ssl_context.wrap_socket(self.socket, server_side=True)
        self.port = self.server_address[1]
        self._thread = threading.Thread(target=self.serve_forever, daemon=True)

    def start(self) -> LocalApp:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.shutdown()
        self.server_close()
        self._thread.join(5)


REPO = Path(__file__).resolve().parents[2]
# Environment variables `lt` reads (like the npm client); never leaked into a test.
LT_ENV = {
    "PORT",
    "HOST",
    "SUBDOMAIN",
    "LOCAL_HOST",
    "LOCAL_HTTPS",
    "LOCAL_CERT",
    "LOCAL_KEY",
    "LOCAL_CA",
    "ALLOW_INVALID_CERT",
    "PRINT_REQUESTS",
    "OPEN",
    "LT_TOKEN",
    "LT_CONFIG_DIR",
}


class LtProcess:
    """The real `lt` command in a subprocess; its output is collected line by line."""

    def __init__(self, args: list[str], env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "client.cli", *args],
            cwd=REPO,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: list[str] = []
        self.errors: list[str] = []
        self._changed = threading.Condition()
        self._readers = [
            threading.Thread(target=self._read, args=(self.proc.stdout, self.lines), daemon=True),
            threading.Thread(target=self._read, args=(self.proc.stderr, self.errors), daemon=True),
        ]
        for reader in self._readers:
            reader.start()

    def _read(self, stream, into: list[str]) -> None:  # noqa: ANN001
        for line in stream:
            with self._changed:
                into.append(line.rstrip("\n"))
                self._changed.notify_all()

    def wait_for_line(self, pattern: str, after: int = 0, timeout: float = WAIT_S) -> re.Match:
        """The first stdout line from index `after` on that matches `pattern`."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                for line in self.lines[after:]:
                    if match := regex.search(line):
                        return match
                left = deadline - time.monotonic()
                if left <= 0 or (self.proc.poll() is not None and not self._reading()):
                    raise AssertionError(
                        f"no line matching {pattern!r}; stdout={self.lines} stderr={self.errors}"
                    )
                self._changed.wait(min(left, 0.1))

    def _reading(self) -> bool:
        return any(reader.is_alive() for reader in self._readers)

    def url(self) -> str:
        return self.wait_for_line(r"^your url is: (\S+)$").group(1)

    def wait(self, timeout: float = WAIT_S) -> int:
        code = self.proc.wait(timeout)
        for reader in self._readers:
            reader.join(timeout)
        return code

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(WAIT_S)
        for reader in self._readers:
            reader.join(WAIT_S)
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()


@pytest.fixture
def relay() -> Iterator[RelayDouble]:
    double = RelayDouble().start()
    try:
        yield double
    finally:
        double.shutdown()
        assert double.violations == []


@pytest.fixture
def local_app_class() -> type[LocalApp]:
    """For tests that start, stop or wrap a local app themselves."""
    return LocalApp


@pytest.fixture
def app() -> Iterator[LocalApp]:
    local = LocalApp().start()
    try:
        yield local
    finally:
        local.stop()


@pytest.fixture
def lt_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in LT_ENV}
    env["LT_CONFIG_DIR"] = str(tmp_path / "config")
    env["PYTHONUNBUFFERED"] = "1"
    return env


@pytest.fixture
def run_lt(lt_env: dict[str, str]) -> Iterator:
    started: list[LtProcess] = []

    def run(*args: str, env: dict[str, str] | None = None) -> LtProcess:
        process = LtProcess(list(args), {**lt_env, **(env or {})})
        started.append(process)
        return process

    yield run
    for process in started:
        process.stop()


@pytest.fixture
def ws_app() -> Iterator[int]:
    """A WebSocket echo server (the `websockets` library) on a port of its own."""
    import asyncio

    from websockets.asyncio.server import ServerConnection, serve

    async def echo(connection: ServerConnection) -> None:
        async for message in connection:
            await connection.send(message)

    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()

    async def start():  # noqa: ANN202
        return await serve(echo, "127.0.0.1", 0)

    server = asyncio.run_coroutine_threadsafe(start(), loop).result(WAIT_S)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:

        async def stop() -> None:
            server.close()
            await server.wait_closed()

        asyncio.run_coroutine_threadsafe(stop(), loop).result(WAIT_S)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(WAIT_S)
        loop.close()
