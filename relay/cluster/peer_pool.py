"""Connections to peer nodes (scale-out): a plain HTTP/1.1 client (h11 over asyncio streams)
to another node's public listener, kept alive and pooled per peer. What is sent over them is
relay/cluster/peer_proxy.py's.
"""

from __future__ import annotations

import asyncio

import h11
from django.conf import settings

from relay.asgi_types import H11Event, H11Next, H11Received
from relay.pool.backpressure import within
from relay.pool.errors import PoolError
from relay.pool.reuse import next_cycle
from relay.protocol import MAX_IDLE_PER_PEER, PARSE_SLICE_BYTES, PEER_MAX_HEAD_BYTES

READ_BYTES = PARSE_SLICE_BYTES  # parsed at most this much at a time (relay.protocol)


class PeerDown(Exception):
    """The owner node could not be reached at all."""


class PeerConnection:
    def __init__(self, address: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.address = address
        self.reader = reader
        self.writer = writer
        self.h11 = h11.Connection(h11.CLIENT, max_incomplete_event_size=PEER_MAX_HEAD_BYTES)

    @property
    def stale(self) -> bool:
        return self.reader.at_eof() or self.writer.is_closing()

    def write(self, data: bytes) -> None:
        if self.writer.is_closing():
            raise PoolError("peer connection closed")
        self.writer.write(data)

    def send(self, *events: H11Event) -> None:
        parts: list[bytes] = []
        for event in events:
            parts.extend(self.h11.send_with_data_passthrough(event) or ())
        if parts:
            self.write(b"".join(parts))

    def poll_event(self) -> H11Next:
        return self.h11.next_event()

    async def drain(self, timeout: float | None = None) -> None:
        """As PoolSocket.drain: an owner node that stops reading raises TimeoutError."""
        if timeout is None:
            timeout = settings.RELAY_RESPONSE_TIMEOUT_S
        try:
            async with asyncio.timeout(timeout):
                await self.writer.drain()
        except ConnectionError as exc:
            raise PoolError(f"peer connection lost: {exc}") from None

    async def read_raw(self, timeout: float | None) -> bytes:
        try:
            async with asyncio.timeout(timeout):
                return await self.reader.read(READ_BYTES)
        except ConnectionError:
            return b""

    async def next_event(self, timeout: float, deadline: float | None = None) -> H11Received:
        while True:
            event = self.h11.next_event()
            if event is not h11.NEED_DATA:
                return event  # type: ignore[return-value]  # h11's sentinels are classes: `is not NEED_DATA` does not narrow
            self.h11.receive_data(await self.read_raw(within(timeout, deadline)))

    def reusable(self) -> bool:
        return not self.stale and next_cycle(self.h11)

    def abort(self) -> None:
        self.writer.transport.abort()


class PeerPool:
    def __init__(self, connect_timeout: float) -> None:
        self.connect_timeout = connect_timeout
        self._idle: dict[str, list[PeerConnection]] = {}

    async def connect(self, address: str) -> PeerConnection:
        host, _, port = address.rpartition(":")
        try:
            async with asyncio.timeout(self.connect_timeout):
                reader, writer = await asyncio.open_connection(
                    host.strip("[]"), int(port), limit=READ_BYTES
                )
        except (OSError, TimeoutError, ValueError) as exc:
            raise PeerDown(f"{address}: {exc!r}") from None
        return PeerConnection(address, reader, writer)

    async def acquire(self, address: str) -> tuple[PeerConnection, bool]:
        """A connection to `address` and whether it was reused (so may be stale)."""
        idle = self._idle.get(address)
        while idle:
            conn = idle.pop()
            if not conn.stale:
                return conn, True
            conn.abort()
        return await self.connect(address), False

    def release(self, conn: PeerConnection) -> None:
        idle = self._idle.setdefault(conn.address, [])
        if len(idle) < MAX_IDLE_PER_PEER:
            idle.append(conn)
        else:
            conn.abort()

    def forget(self, address: str) -> None:
        for conn in self._idle.pop(address, []):
            conn.abort()

    def close(self) -> None:
        for address in list(self._idle):
            self.forget(address)
