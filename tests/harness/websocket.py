"""Visitors' WebSockets through a relay, on loopback, with a deadline on the whole session."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import Awaitable, Callable
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidStatus

from harness.relay import Relay


def run_websocket(
    relay: Any, name: str, session: Callable[[ClientConnection], Awaitable[Any]], key: str = ""
) -> Any:
    """Open `ws://<name>.localhost:<port>/ws` on `relay` (connecting to 127.0.0.1), run
    `session` on it and return what it returns; 15 s at most for all of it."""
    query = f"?key={key}" if key else ""

    async def main() -> Any:
        async with asyncio.timeout(15):
            async with connect(
                f"ws://{name}.localhost:{relay.port}/ws{query}",
                host="127.0.0.1",
                port=relay.port,
                proxy=None,
                open_timeout=10,
                close_timeout=5,
            ) as ws:
                return await session(ws)

    return asyncio.run(main())


async def open_websocket(relay: Relay, name: str, source: str) -> ClientConnection | int:
    """An idle visitor's WebSocket from `source` (it answers pings, as browsers do), or the
    HTTP status its handshake was refused with (after checking the JSON message)."""
    sock = socket.create_connection(
        ("127.0.0.1", relay.port), timeout=10, source_address=(source, 0)
    )
    sock.setblocking(False)
    try:
        return await connect(
            f"ws://{relay.host(name)}/ws", sock=sock, proxy=None, open_timeout=10, close_timeout=2
        )
    except InvalidStatus as exc:
        sock.close()
        body = json.loads(exc.response.body)
        assert "WebSocket" in body["message"], body
        return exc.response.status_code


async def visitors_then_a_plain_request(relay: Relay, name: str, sources: list[str]) -> Any:
    """Open one idle WebSocket per source, then a plain GET while they all stay open. The
    sources whose WebSocket opened, the refusals, the GET's answer, how long it took, and
    each open WebSocket's echo afterwards."""
    opened: list[tuple[str, ClientConnection]] = []
    refused: list[tuple[str, int]] = []
    try:
        for source in sources:
            result = await open_websocket(relay, name, source)
            if isinstance(result, int):
                refused.append((source, result))
            else:
                opened.append((source, result))
        started = time.monotonic()
        answer = await asyncio.to_thread(relay.get, "/hello", name=name)
        elapsed = time.monotonic() - started
        echoes = []
        for _, ws in opened:  # every accepted WebSocket still works
            await ws.send("still here")
            echoes.append(await asyncio.wait_for(ws.recv(), 10))
        return [s for s, _ in opened], refused, answer, elapsed, echoes
    finally:
        for _, ws in opened:
            await ws.close()


def run_visitors(relay: Relay, name: str, sources: list[str]) -> Any:
    """`visitors_then_a_plain_request`, within 60 s."""
    return asyncio.run(asyncio.wait_for(visitors_then_a_plain_request(relay, name, sources), 60))
