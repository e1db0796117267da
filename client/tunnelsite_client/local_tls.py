"""TLS to the local app (`--local-https`): the same small face as local_tcp.py over an
asyncio Protocol that keeps every byte it was handed, with a read high-water mark."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import cast

from .idle_state import CLOSED, QUIET, STRAY
from .limits import READ_HIGH_WATER_BYTES, READ_LOW_WATER_BYTES


class BufferingProtocol(asyncio.Protocol):
    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.eof = False
        self.error: BaseException | None = None
        self.lost = False
        self.paused = False
        self.readable = asyncio.Event()
        self.writable = asyncio.Event()
        self.writable.set()
        self.on_idle: Callable[[], None] | None = None  # set while the connection is parked

    def _idle_news(self) -> None:
        on_idle, self.on_idle = self.on_idle, None
        if on_idle is not None:
            on_idle()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A connection's transport (asyncio hands it over as its base type).
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        self.readable.set()
        if len(self.buffer) > READ_HIGH_WATER_BYTES and self.transport and not self.paused:
            self.paused = True
            self.transport.pause_reading()
        self._idle_news()

    def eof_received(self) -> bool:
        self.eof = True
        self.readable.set()
        self._idle_news()
        return False  # close: an app that ended its side has nothing more to say

    def connection_lost(self, exc: BaseException | None) -> None:
        self.eof = self.lost = True
        self.error = exc
        self.readable.set()
        self.writable.set()
        self._idle_news()

    def pause_writing(self) -> None:
        self.writable.clear()

    def resume_writing(self) -> None:
        self.writable.set()


class TLSConnection:
    """TLS: the same face over an asyncio Protocol."""

    def __init__(self, transport: asyncio.Transport, protocol: BufferingProtocol) -> None:
        self.transport = transport
        self.protocol = protocol

    async def read(self, limit: int) -> bytes:
        """Up to `limit` bytes; b"" at the end. Bytes received before an error come
        first; the error (OSError) is raised only once they are all read."""
        proto = self.protocol
        while not proto.buffer and not proto.eof:
            proto.readable.clear()
            await proto.readable.wait()
        if proto.buffer:
            data = bytes(proto.buffer[:limit])
            del proto.buffer[:limit]
            if proto.paused and len(proto.buffer) < READ_LOW_WATER_BYTES and not proto.lost:
                proto.paused = False
                self.transport.resume_reading()
            return data
        if isinstance(proto.error, OSError):
            raise proto.error
        return b""

    def write(self, data: bytes) -> None:
        if self.protocol.lost or self.transport.is_closing():
            raise ConnectionResetError("the local app closed the connection")
        self.transport.write(data)

    async def drain(self) -> None:
        await self.protocol.writable.wait()
        if self.protocol.lost:
            raise ConnectionResetError("the local app closed the connection")

    def is_closing(self) -> bool:
        return self.protocol.lost or self.transport.is_closing()

    def park(self, on_idle: Callable[[], None]) -> None:
        self.protocol.on_idle = on_idle

    def unpark(self) -> None:
        self.protocol.on_idle = None

    def idle_state(self) -> str:
        proto = self.protocol
        if proto.buffer:
            return STRAY
        return CLOSED if self.is_closing() or proto.eof else QUIET

    def close(self) -> None:
        self.protocol.on_idle = None
        self.transport.close()
