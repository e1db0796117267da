"""After a 101 (WebSocket and other upgrades): raw bytes both ways until either side closes."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

from .limits import CHUNK_BYTES
from .local import LocalConnection


async def splice(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    conn: LocalConnection,
    pool_extra: bytes,
    local_extra: bytes,
    count: Callable[[int, int], None],
) -> None:
    """Copy pool socket <-> local app, first the bytes each parser read past the 101
    (`pool_extra` goes to the app, `local_extra` to the relay); `count(received, sent)`
    is told every byte that crosses the pool socket."""
    if local_extra:
        writer.write(local_extra)
        count(0, len(local_extra))
    if pool_extra:
        conn.write(pool_extra)
        await conn.drain()
    up = asyncio.create_task(_copy(reader.read, conn.write, conn.drain, lambda n: count(n, 0)))
    down = asyncio.create_task(_copy(conn.read, writer.write, writer.drain, lambda n: count(0, n)))
    try:
        await asyncio.wait({up, down}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (up, down):
            task.cancel()
        await asyncio.gather(up, down, return_exceptions=True)


async def _copy(
    read: Callable[[int], Awaitable[bytes]],
    write: Callable[[bytes], None],
    drain: Callable[[], Awaitable[None]],
    count: Callable[[int], None],
) -> None:
    with contextlib.suppress(OSError):
        while data := await read(CHUNK_BYTES):
            count(len(data))
            write(data)
            await drain()
