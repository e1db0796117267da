"""One visitor connection to a TCP tunnel's public port, carried over one pool connection.

(The seam of issue 15: the relay's TCP part builds it; see relay.protocol's "TCP tunnels".)
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from relay.pool.tunnel import Tunnel


class TcpVisitor(asyncio.Protocol):
    """Made by the tunnel's listener (relay/pool/tcp_ports.py) for each visitor connection."""

    def __init__(self, tunnel: Tunnel) -> None:
        self.tunnel = tunnel
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport.close()  # not built yet

    def abort(self, reason: str) -> None:
        if self.transport is not None:
            self.transport.abort()
