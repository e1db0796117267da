"""A relay's TCP-tunnel side as `lt tcp` sees it, in a thread of the test process: the
registration API (answers recorded and chosen by the test) and a raw pool listener whose
connections the test drives frame by frame (`RelayEnd`); and an echo app in the same loop."""

from __future__ import annotations

import asyncio
import json
import threading
from collections import deque
from collections.abc import Coroutine
from typing import Any, TypeVar

from harness import log_capture
from harness.waiting import IO_TIMEOUT_S, wait_until

from .listener import Listener
from .peers import App, RelayEnd, local_app

T = TypeVar("T")
HEAD_LIMIT = 64 * 1024
POOL_SECRET = "5" * 64  # an upgraded pool's secret (64 hex characters)
TCP_PORT = 41000  # the public port the answers name (nothing listens: lt never dials it)


class FakeTcpRelay:
    def __init__(self, max_conn_count: int = 10) -> None:
        self.max_conn_count = max_conn_count
        self.api_port = 0
        self.pool_port = 0
        self.heads: list[dict[str, str]] = []  # each registration's headers, lowercased
        self.paths: list[str] = []
        self.refusals: deque[tuple[int, str]] = deque()  # next answers: (status, message)
        self.not_tcp = False  # answer like a relay that knows only HTTP tunnels
        # A cluster node's answer: upgraded pool connections at this base (a node's
        # RELAY_NODE_URL), taken on the API port; None: a raw pool port.
        self.pool_base: str | None = None
        self.pool_refusal = 0  # refuse pool upgrades with this status until lt registers again
        self.pool: list[RelayEnd] = []  # every pool connection accepted, in order
        self.app: App | None = None
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._listeners: list[Listener] = []  # each closes every connection it accepted
        self._app_context: Any = None

    def call(self, coro: Coroutine[Any, Any, T], timeout: float = IO_TIMEOUT_S * 2) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def start(self) -> FakeTcpRelay:
        self._thread.start()

        async def start() -> None:
            api, pool = Listener(self._api), Listener(self._pool)
            self._listeners = [api, pool]
            for listener in self._listeners:
                listener.start()
            self.api_port, self.pool_port = api.port, pool.port
            self._app_context = local_app("echo")
            self.app = await self._app_context.__aenter__()

        self.call(start())
        return self

    def drop_pool(self) -> None:
        """Close every pool connection, as a relay does when its tunnel is gone."""

        async def drop() -> None:
            for end in self.pool:
                end.writer.transport.abort()
            self.pool.clear()

        self.call(drop())

    def stop(self) -> None:
        if self._loop.is_closed():
            return

        async def stop() -> None:
            # Every connection, those still being accepted or answered too (lt connecting
            # as the relay stops).
            for listener in self._listeners:
                await listener.stop()
            await self._app_context.__aexit__(None, None, None)

        self.call(stop())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(IO_TIMEOUT_S)
        self._loop.close()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    def wait_for_pool(self, count: int) -> None:
        wait_until(lambda: len(self.pool) >= count, message=f"{count} pool connections")

    async def _pool(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.pool.append(RelayEnd(reader, writer))

    async def _api(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(IO_TIMEOUT_S):
                head = await reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError):
            writer.close()
            return
        lines = head.decode("latin-1").split("\r\n")
        method, path, _ = lines[0].split(" ", 2)
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            if name:
                headers[name.strip().lower()] = value.strip()
        status, body = 200, b""
        if headers.get("upgrade") == "tunnelsite-pool" and self.pool_refusal:
            body = json.dumps({"message": "no such tunnel here"}).encode()
            writer.write(
                f"HTTP/1.1 {self.pool_refusal} X\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
                + body
            )
            await writer.drain()
            writer.close()
            return
        if headers.get("upgrade") == "tunnelsite-pool":
            writer.write(
                b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\n"
                b"Upgrade: tunnelsite-pool\r\n\r\n"
            )
            await writer.drain()
            self.pool.append(RelayEnd(reader, writer))
            return
        if method == "DELETE":
            status = 204
        else:
            self.heads.append(headers)
            self.pool_refusal = 0
            self.paths.append(path)
            if self.refusals:
                status, message = self.refusals.popleft()
                body = json.dumps({"message": message}).encode()
            else:
                body = json.dumps(self._answer()).encode()
        writer.write(
            f"HTTP/1.1 {status} X\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
            + body
        )
        await writer.drain()
        writer.close()

    def _answer(self) -> dict[str, object]:
        answer: dict[str, object] = {
            "id": "tcpa1b2c3",
            "port": self.pool_port,
            "max_conn_count": self.max_conn_count,
            "ip": "127.0.0.1",
        }
        if self.pool_base is not None:
            answer["pool_url"] = f"{self.pool_base}/api/tunnels/tcpa1b2c3/pool"
            answer["pool_secret"] = POOL_SECRET
            log_capture.remember(POOL_SECRET, "the pool secret of the fake relay (tcp_client)")
        if self.not_tcp:
            return {**answer, "url": "http://tcpa1b2c3.localhost"}
        return {**answer, "url": f"tcp://127.0.0.1:{TCP_PORT}", "tcp_port": TCP_PORT}
