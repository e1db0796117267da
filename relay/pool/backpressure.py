"""A pool socket's backpressure, both ways: bounded reading and writes with a deadline.

Bytes the client sends wait in an inbox; past READ_HIGH_WATER the socket stops reading
(relay/pool/socket.py's `data_received`), and h11 is fed a slice of at most
PARSE_SLICE_BYTES at a time, reading resuming at READ_LOW_WATER. Writes wait for the
client to take them (`drain`), never for ever. Every wait has a deadline.
"""

from __future__ import annotations

import asyncio
from collections import deque

from relay.pool.errors import PoolError
from relay.protocol import PARSE_SLICE_BYTES, READ_LOW_WATER
from relay.request_settings import request_settings


class Backpressure(asyncio.Protocol):
    """A part of relay.pool.socket.PoolSocket, which sets the state below (in its
    `__init__`, so a socket is made in one call)."""

    __slots__ = (
        "_inbox",
        "_inbox_bytes",
        "_inbox_offset",
        "_eof",
        "_reading_paused",
        "_data_waiter",
        "_write_paused",
        "_drain_waiter",
    )

    transport: asyncio.Transport | None
    closed: bool
    _inbox: deque[bytes]
    _inbox_bytes: int
    _inbox_offset: int  # bytes of _inbox[0] already taken
    _eof: bool
    _reading_paused: bool
    _data_waiter: asyncio.Future[None] | None
    _write_paused: bool
    _drain_waiter: asyncio.Future[None] | None

    # --- writing ----------------------------------------------------------------------------
    @property
    def write_paused(self) -> bool:
        """The client is behind on what was written (a TCP visitor stops being read then)."""
        return self._write_paused

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        waiter = self._drain_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def drain(self, timeout: float | None = None) -> None:
        """Wait until the client has taken what was written, for at most `timeout` seconds
        (default RELAY_RESPONSE_TIMEOUT_S): a client that stops reading raises TimeoutError
        instead of holding the visitor, the socket and the spooled body for ever."""
        if self.closed:
            raise PoolError("pool socket closed")
        if not self._write_paused:
            return
        if timeout is None:
            timeout = request_settings().response_timeout_s
        loop = asyncio.get_running_loop()
        waiter = self._drain_waiter = loop.create_future()
        timer = loop.call_later(timeout, _expire, waiter)
        try:
            await waiter
        finally:
            timer.cancel()
            self._drain_waiter = None

    # --- reading ----------------------------------------------------------------------------
    def _take(self, limit: int = PARSE_SLICE_BYTES) -> bytes:
        """At most `limit` bytes from the front of the inbox (there is some): the first read
        waiting, uncopied when it fits whole."""
        first = self._inbox[0]
        start = self._inbox_offset
        end = start + limit
        if end < len(first):
            piece = first[start:end]
            self._inbox_offset = end
        else:
            piece = first[start:] if start else first
            self._inbox.popleft()
            self._inbox_offset = 0
        self._inbox_bytes -= len(piece)
        if self._reading_paused and self._inbox_bytes <= READ_LOW_WATER and not self.closed:
            self._reading_paused = False
            self.transport.resume_reading()  # type: ignore[union-attr]
        return piece

    def _gather(self, limit: int) -> bytes:
        """The front of the inbox (there is some) as one piece of at least `limit` bytes, or
        all of it if less, left there in their stead: a response head that came in several
        reads, seen whole, copying no more than the head's limit and one read."""
        inbox = self._inbox
        start = self._inbox_offset
        first = inbox.popleft()
        parts = [first[start:] if start else first]
        size = len(parts[0])
        while inbox and size < limit:
            parts.append(inbox.popleft())
            size += len(parts[-1])
        data = parts[0] if len(parts) == 1 else b"".join(parts)
        inbox.appendleft(data)
        self._inbox_offset = 0
        return data

    async def read_raw(self, timeout: float | None) -> bytes:
        """Raw bytes after a protocol switch, at most PARSE_SLICE_BYTES; b"" at the end."""
        while not self._inbox and not self._eof:
            await self._wait_for_data(timeout)
        return self._take() if self._inbox else b""

    @property
    def settled(self) -> bool:
        """Nothing unread from the client and its side still open: the end of a TCP tunnel's
        conversation left no byte that the next one would take for its own."""
        return not self._inbox and not self._eof and not self.closed

    def _wake(self) -> None:
        waiter = self._data_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def _wait_for_data(self, timeout: float | None) -> None:
        loop = asyncio.get_running_loop()
        waiter = self._data_waiter = loop.create_future()
        timer = loop.call_later(timeout, _expire, waiter) if timeout is not None else None
        try:
            await waiter
        finally:
            if timer is not None:
                timer.cancel()
            self._data_waiter = None


def within(timeout: float, deadline: float | None) -> float:
    """`timeout`, or less when the loop time `deadline` comes first; TimeoutError when it
    has passed."""
    if deadline is None:
        return timeout
    left = deadline - asyncio.get_running_loop().time()
    if left <= 0:
        raise TimeoutError()
    return left if left < timeout else timeout


def _expire(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_exception(TimeoutError())
