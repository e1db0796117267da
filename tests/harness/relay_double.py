"""A stand-in for the relay, for the `lt` client's tests: real sockets on port 0.

`RelayDouble` speaks exactly the relay's contract to a client: registration (`GET /?new`,
`GET /<name>`), release (`DELETE /api/tunnels/<name>`), and pool sockets on a port per
tunnel that it writes requests on as the relay would (h11, keep-alive, X-Forwarded-*).
It runs its own event loop in a thread; every public method is called from the test's.
It records what it saw (registrations, deletes, refused sockets) and any violation of the
contract by the client (bytes on an idle pool socket).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import secrets
import ssl
import threading
from collections import deque
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any, TypeVar

import h11
import wsproto
import wsproto.events as ws_events

from harness import log_capture
from harness.waiting import IO_TIMEOUT_S, wait_until

T = TypeVar("T")
# The relay's rule (relay/protocol.py): the double refuses the names the relay refuses.
SUBDOMAIN_RE = re.compile(r"[a-z0-9][a-z0-9-]{4,61}[a-z0-9]|[a-z0-9]{4,63}")
WAIT_S = IO_TIMEOUT_S
# Read size on the double's sockets; a request body is written in pieces of this size.
CHUNK_BYTES = 64 * 1024


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
        self.secret = secrets.token_hex(32)  # of its upgraded pool (relay.pool_scheme)
        self.upgraded = False  # registered asking for the upgraded pool, and given it

    async def start(self) -> None:
        tls = self.relay.tls if self.upgraded and self.relay.pool_scheme == "https" else None
        self.server = await asyncio.start_server(self._accept, "127.0.0.1", 0, ssl=tls)
        self.port = self.server.sockets[0].getsockname()[1]

    async def _upgrade(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        """The relay's side of an upgraded pool connection: a 101 for the tunnel's secret."""
        try:
            async with asyncio.timeout(WAIT_S):
                head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, OSError, TimeoutError):
            return False
        self.relay.upgrade_heads.append(head)
        if f"tunnelsite-pool-secret: {self.secret}\r\n" not in head.lower():
            writer.write(b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\n\r\n")
            return False
        writer.write(
            b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\n"
            b"Upgrade: tunnelsite-pool\r\n\r\n"
        )
        return True

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
        if self.upgraded:  # upgraded: bound by the secret, not the peer
            if not await self._upgrade(reader, writer):
                self.relay.refused_sockets += 1
                writer.close()
                return
            peer = self.ip
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
            for start in range(0, len(body), CHUNK_BYTES):
                sock.writer.write(
                    conn.send(h11.Data(data=bytes(view[start : start + CHUNK_BYTES])))
                )
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
                conn.receive_data(await reader.read(CHUNK_BYTES))
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
        self.tls: ssl.SSLContext | None = None
        # Give our lt an upgraded pool when it asks (X-Tunnelsite-Pool: upgrade): `pool_url`
        # with this scheme (its tunnel's port, TLS with the API's certificate when https) at
        # `pool_host`, and a secret. None: raw pool sockets only, as the localtunnel server.
        self.pool_scheme: str | None = None
        self.pool_host = "127.0.0.1"
        self.upgrade_heads: list[str] = []  # the head of every upgrade request
        self.registrations: list[Recorded] = []
        self.deletes: list[Recorded] = []
        # Next registration answers: (status, message), or (status, message, headers) for a
        # refusal with headers of its own (X-Tunnelsite-Refusal, Retry-After).
        self.forced: deque[tuple[int, str] | tuple[int, str, dict[str, str]]] = deque()
        self.required_token: str | None = None
        # Keys added to every registration answer (a plan's `limits`, a `cached_url`), and the
        # `limit_reached` of every status answer ("": none): a hostile relay's text, say.
        self.answer_extra: dict[str, object] = {}
        self.limit_reached = ""
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

    def start(self, port: int = 0, tls: ssl.SSLContext | None = None) -> RelayDouble:
        """Listen on 127.0.0.1:`port`; `tls`: the API speaks HTTPS with this server context
        (the pool sockets stay raw, as the relay's raw pool ports)."""

        self.tls = tls

        async def start() -> None:
            self._server = await asyncio.start_server(self._serve_api, "127.0.0.1", port, ssl=tls)
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
        wait_until(lambda: name in self.tunnels, WAIT_S, f"tunnel {name} to register")
        self.call(self.tunnels[name].wait_for_sockets(count or self.max_conn_count))

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
                    ws.receive_data(await sock.reader.read(CHUNK_BYTES))
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
                            ws.receive_data(await sock.reader.read(CHUNK_BYTES))
                    echoes.append("".join(parts))
                sock.writer.write(ws.send(ws_events.CloseConnection(code=1000)))
                await sock.writer.drain()
                while await sock.reader.read(CHUNK_BYTES):
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
                        conn.receive_data(await reader.read(CHUNK_BYTES))
                    elif isinstance(event, h11.Request):
                        request = event
                    elif isinstance(event, h11.Data):
                        continue  # a body (lt login's POSTs): the double answers by path
                    elif isinstance(event, h11.EndOfMessage):
                        break
                    else:
                        return
            headers = {k.decode().lower(): v.decode() for k, v in request.headers}
            recorded = Recorded(request.method.decode(), request.target.decode(), headers)
            peer = writer.get_extra_info("peername")[0]
            answer = await self._answer(recorded, peer)
            status, payload = answer[0], answer[1]
            body = json.dumps(payload).encode() if payload is not None else b""
            out = [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
            out += list(answer[2].items()) if len(answer) > 2 else []
            writer.write(conn.send(h11.Response(status_code=status, headers=out)))
            writer.write(conn.send(h11.Data(data=body)) + conn.send(h11.EndOfMessage()))
            await writer.drain()
        except (h11.ProtocolError, OSError, TimeoutError):
            pass
        finally:
            writer.close()

    async def _answer(
        self, req: Recorded, peer: str
    ) -> tuple[int, Any] | tuple[int, Any, dict[str, str]]:
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
            status: dict[str, object] = {"connected_sockets": len(tunnel.sockets)}
            if self.limit_reached:
                status["limit_reached"] = self.limit_reached
            return 200, status
        if req.method != "GET":
            return 405, {"message": "method not allowed"}
        self.registrations.append(req)
        if self.forced:
            forced = self.forced.popleft()
            if len(forced) > 2:
                return forced[0], {"message": forced[1]}, forced[2]
            return forced[0], {"message": forced[1]}
        token = req.headers.get("authorization", "")
        if self.required_token and token != f"Bearer {self.required_token}":
            return 401, {"message": "a valid token is required"}
        if req.path == "/?new":
            name = f"test-{secrets.token_hex(3)}"
        else:
            name = path.strip("/")
            if "/" in name or not SUBDOMAIN_RE.fullmatch(name):
                return 403, {"message": "Invalid subdomain."}
        owner = token or peer
        if self.owners.get(name, owner) != owner:
            return 409, {"message": f"{name} is taken"}
        old = self.tunnels.pop(name, None)
        if old is not None:
            await old.close()
        tunnel = TunnelDouble(self, name, owner, peer)
        # As the relay: an upgraded pool only for a registration that asks for it.
        asked = req.headers.get("x-tunnelsite-pool") == "upgrade"
        tunnel.upgraded = asked and self.pool_scheme is not None
        await tunnel.start()
        self.tunnels[name] = tunnel
        self.owners[name] = owner
        answer: dict[str, object] = {
            "id": name,
            "port": tunnel.port,
            "max_conn_count": self.max_conn_count,
            "url": f"http://{name}.localhost:{self.port}",
        }
        if tunnel.upgraded:
            pool_base = f"{self.pool_scheme}://{self.pool_host}:{tunnel.port}"
            answer["pool_url"] = f"{pool_base}/api/tunnels/{name}/pool"
            answer["pool_secret"] = tunnel.secret
            log_capture.remember(tunnel.secret, f"the pool secret of {name!r} (relay double)")
        return 200, {**answer, **self.answer_extra}


def tls_double(ca: Any, *names: str) -> RelayDouble:
    """A started RelayDouble over HTTPS, its certificate from the trustme CA `ca` for `names`."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(*names).configure_cert(context)
    return RelayDouble().start(tls=context)
