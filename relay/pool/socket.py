"""One pool socket: a raw TCP connection a tunnel client opened to its tunnel's port.

The relay writes a visitor's request onto it and reads the response back, with a
high-water mark before it stops reading. The common exchange (a request with a
Content-Length or no body, an HTTP/1.1 answer with one Content-Length) goes without h11's
state machine: the head written as bytes, the answer's head parsed with h11's grammar, its
body passed on as it arrives (relay/pool/wire.py). Anything else goes through an h11
client-role connection (sans-IO, so framing is tested without sockets), a slice at a time.
Whether the socket serves another exchange afterwards is relay/pool/reuse.py's part of it;
the inbox and the waits for the client, relay/pool/backpressure.py's.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections import deque
from typing import Any, Protocol, cast

import h11

from relay.asgi_types import H11Event, H11Next, H11Received
from relay.pool.backpressure import within
from relay.pool.errors import PoolError
from relay.pool.reuse import Reuse, Trust, ambiguous
from relay.pool.wire import (
    END_OF_MESSAGE,
    FALLBACK,
    Exchange,
    Head,
    data_event,
    parse_head,
    request_head,
    shadow,
)
from relay.protocol import (
    POOL_BODY_PIECE_BYTES,
    POOL_KEEPALIVE_COUNT,
    POOL_KEEPALIVE_IDLE_S,
    POOL_KEEPALIVE_INTERVAL_S,
    READ_HIGH_WATER,
)

logger = logging.getLogger(__name__)

Request = h11.Request  # for annotations in PoolSocket, whose `h11` property hides the module

KEEPALIVE = (POOL_KEEPALIVE_IDLE_S, POOL_KEEPALIVE_INTERVAL_S, POOL_KEEPALIVE_COUNT)

# Every socket's inbox until its first bytes arrive: shared, and unable to hold any (an
# empty deque costs 760 bytes and a GC-tracked object, ten per idle tunnel).
_NO_INBOX: deque[bytes] = deque(maxlen=0)


def enable_keepalive(sock: Any) -> None:
    """TCP keepalive on a pool connection's socket (raw, or the TCP socket under an upgraded
    one's TLS): a client whose network went away is noticed within about 30 s. `sock` is a
    socket or uvloop's stand-in for one."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        if hasattr(socket, "TCP_KEEPIDLE"):  # Linux; elsewhere the system's timing
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, KEEPALIVE[0])
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, KEEPALIVE[1])
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, KEEPALIVE[2])
    except OSError:
        pass


class SocketOwner(Trust, Protocol):
    """What a pool socket needs of its tunnel (relay/pool/tunnel.py), which owns its sockets:
    attaching and detaching, and what reuse asks (`Trust`)."""

    name: str

    def attach(self, conn: PoolSocket) -> bool: ...

    def detach(self, conn: PoolSocket) -> None: ...


class PoolSocket(Reuse):
    # Slots, not a __dict__ (here and in its bases): an idle tunnel holds ten of these (a few
    # KB per tunnel).
    __slots__ = (
        "tunnel",
        "transport",
        "peer_ip",
        "_h11",
        "_wire",
        "_max_head_bytes",
        "closed",
        "received",
        "holder",
    )

    tunnel: SocketOwner

    def __init__(self, tunnel: SocketOwner, max_head_bytes: int) -> None:
        self.tunnel = tunnel
        self.transport: asyncio.Transport | None = None
        self.peer_ip = ""
        self._h11: h11.Connection | None = None  # made on first use: most sockets idle
        self._wire: Exchange | None = None  # the exchange on the fast path (relay/pool/wire.py)
        self._max_head_bytes = max_head_bytes
        self.busy = False  # an exchange owns this socket
        self.holder: str | None = None  # the visitor address it serves (relay.pool.tunnel.held)
        self.closed = False
        self._inbox: deque[bytes] = _NO_INBOX  # its own made with the first bytes
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
            except OSError:
                pass
            enable_keepalive(sock)
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
        if self._inbox is _NO_INBOX:
            self._inbox = deque()
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

    # --- used by the proxies ---------------------------------------------------------------
    def abort(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.abort()

    def write(self, data: bytes) -> None:
        if self.closed:
            raise PoolError("pool socket closed")
        self.transport.write(data)  # type: ignore[union-attr]

    def send(self, *events: H11Event) -> None:
        """Frame events and write them in a single write: the common request as bytes
        (relay/pool/wire.py), any other with h11. Raises h11.LocalProtocolError, having
        written nothing, for what cannot be sent."""
        parts: list[bytes] = []
        wire = self._wire
        for event in events:
            # (`type() is`, not `isinstance`: on h11's events that runs ABCMeta's check in Python)
            if type(event) is h11.Request:
                self.ambiguous = event.method == b"HEAD"
                wire = self._wire = self._fast_request(event, parts)
                if wire is not None:
                    continue
            if wire is None:
                parts.extend(self.h11.send_with_data_passthrough(event) or ())
            elif type(event) is h11.Data:
                wire.body(event.data)
                parts.append(event.data)
            elif type(event) is h11.EndOfMessage and not event.headers:
                wire.end()
            else:  # trailers, or a response: h11 refuses them on a Content-Length request
                wire.broken = True
                raise h11.LocalProtocolError(f"can't send {type(event).__name__} here")
        if parts:
            self.write(parts[0] if len(parts) == 1 else b"".join(parts))

    def _fast_request(self, request: Request, parts: list[bytes]) -> Exchange | None:
        """The exchange on the fast path for `request`, its head added to `parts`; or None:
        h11 carries it. Like h11, a request is refused while the last exchange has not
        ended."""
        last = self._wire
        if last is not None and not last.done:
            last.broken = True
            raise h11.LocalProtocolError("a request before the last exchange ended")
        conn = self._h11
        if conn is not None and conn.our_state is not h11.IDLE:
            return None  # h11 refuses it, as before
        framed = request_head(request)
        if framed is None:
            return None
        parts.append(framed[0])
        return Exchange(request, framed[1])

    async def next_event(self, timeout: float, deadline: float | None = None) -> H11Received:
        """The next h11 event of the response, waiting at most `timeout` for more bytes, and
        past the loop time `deadline` (when given) not at all: TimeoutError."""
        while True:
            event = self.poll_event()
            if event is not h11.NEED_DATA:
                return event  # type: ignore[return-value]  # h11's sentinels are classes: `is not NEED_DATA` does not narrow
            if self._inbox and self._wire is None:
                self.h11.receive_data(self._take())
            else:  # nothing to parse, or (the fast path) a head not yet whole
                await self._wait_for_data(within(timeout, deadline))

    def poll_event(self) -> H11Next:
        """The next h11 event from the bytes h11 was given so far (on the fast path: from
        the inbox, a piece of at most POOL_BODY_PIECE_BYTES), or NEED_DATA; never waits,
        and never feeds h11 more (`next_event` does, a slice at a time), so what a caller
        does per event is bounded by one slice or piece."""
        wire = self._wire
        if wire is not None:
            return h11.PAUSED if wire.ended else self._poll_wire(wire)
        conn = self.h11
        event = conn.next_event()
        if event is not h11.NEED_DATA:
            if type(event) is not h11.Data and ambiguous(event):
                self.ambiguous = True
            return event
        if self._inbox or not self._eof:
            return event
        conn.receive_data(b"")
        event = conn.next_event()
        if event is h11.NEED_DATA:
            raise PoolError("pool socket closed mid-response")
        if type(event) is not h11.Data and ambiguous(event):
            self.ambiguous = True
        return event

    def _poll_wire(self, wire: Exchange) -> H11Next:
        """`poll_event` on the fast path: the head once whole, then the body's pieces as
        they came (at most POOL_BODY_PIECE_BYTES), then its end. A head that is not the
        common case goes to h11 with every byte of it."""
        left = wire.response_left
        if left < 0:
            limit = self._max_head_bytes
            # Past `limit` bytes without its end, a head is h11's: no need to look further.
            head = parse_head(self._gather(limit + 1), limit) if self._inbox else None
            if isinstance(head, Head):
                self._take(head.size)
                wire.response_left = head.length
                wire.request = None
                return head.response
            if head is FALLBACK or self._eof:
                self._wire = None
                if wire.request is None:  # (a head is read once)
                    raise PoolError("a response head after the head")
                self._h11 = shadow(wire.request, self._max_head_bytes)
                return self.poll_event()
            return h11.NEED_DATA
        if not left:
            wire.ended = True
            return END_OF_MESSAGE
        if self._inbox:
            piece = self._take(left if left < POOL_BODY_PIECE_BYTES else POOL_BODY_PIECE_BYTES)
            wire.response_left = left - len(piece)
            return data_event(piece)
        if self._eof:
            raise PoolError("pool socket closed mid-response")
        return h11.NEED_DATA
