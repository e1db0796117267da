"""A visitor's WebSocket through a relay, on loopback, with a deadline on the whole session."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from websockets.asyncio.client import ClientConnection, connect


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
