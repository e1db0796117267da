"""One pool socket: a raw TCP connection a tunnel client opened to its tunnel's port.

The relay writes a visitor's request onto it and reads the response back through an h11
client-role connection (sans-IO, so framing is tested without sockets). The socket is
reused for the next request only when the response ended cleanly; anything odd (bytes
while idle, bytes after the end of a response, a parse error, a timeout) closes it.

A raw-pipe client (the npm one: no client id) passes on whatever the app writes, so its
sockets get more care: never reused after an answer of a kind where buggy apps write a
body anyway (HEAD, 204, 304, a 1xx, trailers), checked once more right before each reuse
(`quiet`), and once its app has sent bytes past an answer, never reused again
(`Tunnel.distrust`). Our lt frames every exchange itself and needs none of this.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections import deque
from typing import Protocol, cast

import h11
from django.conf import settings

from relay.asgi_types import H11Event, H11Next, H11Received
from relay.protocol import (
    PARSE_SLICE_BYTES,
    POOL_KEEPALIVE_COUNT,
    POOL_KEEPALIVE_IDLE_S,
    POOL_KEEPALIVE_INTERVAL_S,
    READ_HIGH_WATER,
    READ_LOW_WATER,
)

logger = logging.getLogger(__name__)

KEEPALIVE = (POOL_KEEPALIVE_IDLE_S, POOL_KEEPALIVE_INTERVAL_S, POOL_KEEPALIVE_COUNT)


class PoolError(Exception):
    """The pool socket failed mid-exchange; the visitor gets a 502."""


class SocketOwner(Protocol):
    """What a pool socket needs of its tunnel (relay/pool/tunnel.py), which owns its sockets."""

    name: str
    client_id: str  # our lt's id; empty for a raw-pipe (npm) client
    distrusted: bool

    def attach(self, conn: PoolSocket) -> bool: ...

    def detach(self, conn: PoolSocket) -> None: ...

    def distrust(self, how: str) -> None: ...


class PoolSocket(asyncio.Protocol):
    # Slots, not a __dict__: an idle tunnel holds ten of these (a few KB per tunnel).
    __slots__ = (
        "tunnel",
        "transport",
        "peer_ip",
        "_h11",
        "_max_head_bytes",
        "busy",
        "closed",
        "_inbox",
        "_inbox_bytes",
        "_inbox_offset",
        "_eof",
        "_reading_paused",
        "_data_waiter",
        "_write_paused",
        "_drain_waiter",
        "received",
        "holder",
        "ambiguous",
        "_fd",
    )

    def __init__(self, tunnel: SocketOwner, max_head_bytes: int) -> None:
        self.tunnel = tunnel
        self.transport: asyncio.Transport | None = None
        self.peer_ip = ""
        self._h11: h11.Connection | None = None  # made on first use: most sockets idle
        self._max_head_bytes = max_head_bytes
        self.busy = False  # an exchange owns this socket
        self.holder: str | None = None  # the visitor address it serves (relay.pool.tunnel.held)
        self.closed = False
        self._inbox: deque[bytes] = deque()
        self._inbox_bytes = 0
        self._inbox_offset = 0  # bytes of _inbox[0] already taken
        self._eof = False
        self._reading_paused = False
        self._data_waiter: asyncio.Future[None] | None = None
        self._write_paused = False
        self._drain_waiter: asyncio.Future[None] | None = None
        self.received = 0  # bytes read from the client: 0 after a request means unanswered
        self.ambiguous = False  # this exchange is of a kind never reused on a raw pipe
        self._fd = -1  # the socket's descriptor, for the peek before a reuse

    @property
    def h11(self) -> h11.Connection:
        conn = self._h11
        if conn is None:
            conn = self._h11 = h11.Connection(
                h11.CLIENT, max_incomplete_event_size=self._max_head_bytes
            )
        return conn

    # --- asyncio.Protocol ------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement the interface without subclassing asyncio.Transport.
        self.transport = cast(asyncio.Transport, transport)
        peer = transport.get_extra_info("peername")
        self.peer_ip = peer[0] if peer else ""
        sock = transport.get_extra_info("socket")
        if sock is not None:
            self._fd = sock.fileno()
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
                if hasattr(socket, "TCP_KEEPIDLE"):  # Linux; elsewhere the system's timing
                    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, KEEPALIVE[0])
                    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, KEEPALIVE[1])
                    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, KEEPALIVE[2])
            except OSError:
                pass
        if not self.tunnel.attach(self):
            self.closed = True
            self.transport.abort()

    def data_received(self, data: bytes) -> None:
        if not self.busy:
            # A client that talks while nobody asked would corrupt the next exchange.
            logger.debug("closing pool socket of %s: bytes while idle", self.tunnel.name)
            self.abort()
            self.tunnel.distrust("it wrote to an idle connection")
            return
        self._inbox.append(data)
        self._inbox_bytes += len(data)
        self.received += len(data)
        if self._inbox_bytes > READ_HIGH_WATER and not self._reading_paused:
            self._reading_paused = True
            self.transport.pause_reading()  # type: ignore[union-attr]
        self._wake()

    def eof_received(self) -> bool:
        self._eof = True
        self._wake()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._eof = True
        self._wake()
        waiter = self._drain_waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(PoolError("pool socket closed while sending"))
        self.tunnel.detach(self)

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        waiter = self._drain_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # --- used by the proxies ---------------------------------------------------------------
    def abort(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.abort()

    def write(self, data: bytes) -> None:
        if self.closed:
            raise PoolError("pool socket closed")
        self.transport.write(data)  # type: ignore[union-attr]

    async def drain(self, timeout: float | None = None) -> None:
        """Wait until the client has taken what was written, for at most `timeout` seconds
        (default RELAY_RESPONSE_TIMEOUT_S): a client that stops reading raises TimeoutError
        instead of holding the visitor, the socket and the spooled body for ever."""
        if self.closed:
            raise PoolError("pool socket closed")
        if not self._write_paused:
            return
        if timeout is None:
            timeout = settings.RELAY_RESPONSE_TIMEOUT_S
        loop = asyncio.get_running_loop()
        waiter = self._drain_waiter = loop.create_future()
        timer = loop.call_later(timeout, _expire, waiter)
        try:
            await waiter
        finally:
            timer.cancel()
            self._drain_waiter = None

    def send(self, *events: H11Event) -> None:
        """Frame events with h11 and write them in a single write."""
        parts: list[bytes] = []
        for event in events:
            if type(event) is h11.Request:
                self.ambiguous = event.method == b"HEAD"
            parts.extend(self.h11.send_with_data_passthrough(event) or ())
        if parts:
            self.write(parts[0] if len(parts) == 1 else b"".join(parts))

    async def next_event(self, timeout: float) -> H11Received:
        """The next h11 event of the response, waiting at most `timeout` for more bytes."""
        while True:
            event = self.poll_event()
            if event is not h11.NEED_DATA:
                return event  # type: ignore[return-value]  # h11's sentinels are classes: `is not NEED_DATA` does not narrow
            if self._inbox:
                self.h11.receive_data(self._take())
            else:
                await self._wait_for_data(timeout)

    def poll_event(self) -> H11Next:
        """The next h11 event from the bytes h11 was given so far, or NEED_DATA; never
        waits, and never feeds h11 more (`next_event` does, a slice at a time), so what a
        caller does per event is bounded by one slice."""
        conn = self.h11
        event = conn.next_event()
        if event is not h11.NEED_DATA:
            if type(event) is not h11.Data and _ambiguous(event):
                self.ambiguous = True
            return event
        if self._inbox or not self._eof:
            return event
        conn.receive_data(b"")
        event = conn.next_event()
        if event is h11.NEED_DATA:
            raise PoolError("pool socket closed mid-response")
        if type(event) is not h11.Data and _ambiguous(event):
            self.ambiguous = True
        return event

    def _take(self) -> bytes:
        """At most PARSE_SLICE_BYTES from the front of the inbox (there is some)."""
        first = self._inbox[0]
        start = self._inbox_offset
        end = start + PARSE_SLICE_BYTES
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

    async def read_raw(self, timeout: float | None) -> bytes:
        """Raw bytes after a protocol switch, at most PARSE_SLICE_BYTES; b"" at the end."""
        while not self._inbox and not self._eof:
            await self._wait_for_data(timeout)
        return self._take() if self._inbox else b""

    def finish_exchange(self, had_body: bool) -> bool:
        """Called after a complete response. True when the socket may serve another."""
        self.busy = False
        if self.closed or self._eof:
            return False
        if self._inbox or self.h11.trailing_data[0]:
            self.tunnel.distrust("it sent more after a complete answer")
            return False
        if not self.tunnel.client_id:
            # A raw pipe (npm): not after a body (an app may answer before reading it, then
            # answer the body as a request of its own, whenever it likes), nor after an
            # answer where apps write a body anyway, nor once its app was caught at it.
            if had_body or self.ambiguous or self.tunnel.distrusted:
                return False
        return next_cycle(self.h11)

    def quiet(self) -> bool:
        """Right before a raw pipe's socket serves again: whether the client is still quiet.

        One recv(MSG_PEEK) syscall, for what arrived since the last answer but the loop has
        not read yet: a late second answer, or the end of the stream. Either closes the
        socket (the first also distrusts the tunnel); False then."""
        if self.closed or self._eof or self.transport is None or self.transport.is_closing():
            return False
        if self._fd < 0:
            return True
        # A socket object over the transport's descriptor, detached at once (uvloop hands
        # out no socket that can recv; this costs no syscall of its own).
        probe = socket.socket(socket.AF_INET, socket.SOCK_STREAM, 0, self._fd)
        try:
            data = probe.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT)
        except (BlockingIOError, InterruptedError):
            return True
        except OSError:
            data = b""
        finally:
            probe.detach()
        self.abort()
        if data:
            self.tunnel.distrust("it wrote to an idle connection")
        return False

    @property
    def used(self) -> bool:
        """Whether the socket carried a request (its parser is made on first use)."""
        return self._h11 is not None

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


# Statuses that forbid a body, which buggy apps write anyway (RFC 9110 15.3.5, 15.4.5).
_BODILESS_STATUSES = frozenset({204, 304})


def _ambiguous(event: H11Next) -> bool:
    """An event after which a raw pipe's socket is not reused: a 1xx, a 204 or 304, trailers."""
    kind = type(event)
    if kind is h11.InformationalResponse:
        return True
    if kind is h11.Response:
        return event.status_code in _BODILESS_STATUSES  # type: ignore[union-attr]  # `kind is` narrows at run time; mypy does not follow it
    return kind is h11.EndOfMessage and bool(event.headers)  # type: ignore[union-attr]  # as above


def next_cycle(conn: h11.Connection) -> bool:
    """Ready `conn` for the next exchange; False unless both sides ended cleanly and
    nothing arrived past the end (bytes after a response must not reach the next one)."""
    if conn.our_state is not h11.DONE or conn.their_state is not h11.DONE:
        return False
    if conn.trailing_data[0]:
        return False
    try:
        conn.start_next_cycle()
    except h11.LocalProtocolError:
        return False
    return True


def _expire(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_exception(TimeoutError())
