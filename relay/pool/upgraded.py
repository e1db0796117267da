"""An upgraded pool connection: one of our lt's pool connections over the relay's own port,
after its `101` (relay/edge/pool_upgrade.py answers the upgrade).

Twisted owns such a connection (plain TCP, or TLS when the relay serves https), not asyncio:
`UpgradedPool` is the Twisted protocol that takes it over and drives an unchanged
relay.pool.socket.PoolSocket, and `TwistedPipe` is the asyncio transport that PoolSocket
writes to, pauses and closes. After the `101` the connection carries exactly what a raw pool
socket carries, so the exchanges, reuse and backpressure are the raw socket's.
"""

from __future__ import annotations

import contextlib
import socket
from typing import Any

from twisted.internet.protocol import Protocol, connectionDone
from twisted.python.failure import Failure

from relay.pool.socket import PoolSocket, enable_keepalive
from relay.pool.tunnel import Tunnel
from relay.pool.write_now import write_now


class TwistedPipe:
    """The asyncio.Transport face of a Twisted transport, as much of it as PoolSocket uses."""

    def __init__(self, transport: Any, peer: tuple[str, int]) -> None:
        self._transport = transport  # zope-typed: untyped at the Twisted boundary
        self._peer = peer
        self._closing = False
        # The connection is gone (Twisted called connectionLost): nothing may touch the
        # transport again. Twisted's TLS layer drops its TLS state right after telling the
        # protocol, so a late abortConnection() raised AttributeError inside Daphne when an
        # exchange that failed because the client left discarded its socket afterwards.
        self._lost = False

    def write(self, data: bytes) -> None:
        if not self._closing:
            write_now(self._transport, data)

    def abort(self) -> None:
        self._closing = True
        if not self._lost:
            self._transport.abortConnection()

    def close(self) -> None:
        self._closing = True
        if not self._lost:
            self._transport.loseConnection()

    def is_closing(self) -> bool:
        return self._closing

    def lost(self) -> None:
        self._closing = self._lost = True

    def pause_reading(self) -> None:
        self._transport.pauseProducing()

    def resume_reading(self) -> None:
        self._transport.resumeProducing()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        if name == "peername":
            return self._peer
        # "socket": none. Our lt frames its exchanges, so the peek before a raw-pipe reuse
        # is not needed; keepalive is set by UpgradedPool on the TCP socket under the TLS.
        return default


def _tcp_socket(transport: Any) -> socket.socket | None:
    """The TCP socket under a Twisted transport (under its TLS layer, if any)."""
    seen: set[int] = set()
    while transport is not None and id(transport) not in seen:
        seen.add(id(transport))
        sock = getattr(transport, "socket", None)
        if isinstance(sock, socket.socket):
            return sock
        transport = getattr(transport, "transport", None)
    return None


def _enable_keepalive(transport: Any) -> None:
    """TCP keepalive as on raw pool sockets, on the TCP socket under any TLS."""
    sock = _tcp_socket(transport)
    if sock is not None:
        enable_keepalive(sock)


class UpgradedPool(Protocol):
    """The Twisted protocol of an upgraded pool connection: it feeds a PoolSocket of `tunnel`,
    and is the transport's push producer, so a client slow to read pauses the PoolSocket's
    writes (`drain`) as a raw socket's full buffer does."""

    def __init__(self, tunnel: Tunnel, max_head_bytes: int, address: str = "") -> None:
        self.tunnel = tunnel
        self.address = address  # the client's, when a trusted proxy in front named it
        self.sock = PoolSocket(tunnel, max_head_bytes)
        self.pipe: TwistedPipe | None = None

    @property
    def attached(self) -> bool:
        return not self.sock.closed and self.sock in self.tunnel.connections

    def connectionMade(self) -> None:  # noqa: N802 (Twisted's name)
        transport: Any = self.transport
        peer = transport.getPeer()
        host = self.address or str(getattr(peer, "host", ""))
        self.pipe = TwistedPipe(transport, (host, peer.port))
        _enable_keepalive(transport)
        with contextlib.suppress(Exception):  # no write backpressure beats no connection
            transport.unregisterProducer()  # the HTTP channel was its producer
        transport.registerProducer(self, True)
        # Bound to the tunnel by its secret (checked before the 101), not by its address.
        self.tunnel.upgrading = self.sock
        try:
            self.sock.connection_made(self.pipe)  # type: ignore[arg-type]  # duck-typed
        finally:
            self.tunnel.upgrading = None

    def dataReceived(self, data: bytes) -> None:  # noqa: N802
        if not self.sock.closed:
            self.sock.data_received(data)

    def connectionLost(self, reason: Failure = connectionDone) -> None:  # noqa: N802
        if self.pipe is not None:
            self.pipe.lost()
        self.sock.connection_lost(None)

    # --- IPushProducer, registered on the transport ----------------------------------------
    def pauseProducing(self) -> None:  # noqa: N802
        self.sock.pause_writing()

    def resumeProducing(self) -> None:  # noqa: N802
        self.sock.resume_writing()

    def stopProducing(self) -> None:  # noqa: N802
        pass
