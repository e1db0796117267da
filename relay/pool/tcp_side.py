"""A TCP tunnel's public side (`lt tcp`): its port's listener and the visitors connected now.

A `Tunnel` with a `tcp` is a TCP tunnel; its pool connections carry frames
(relay/pool/tcp_frames.py) instead of HTTP exchanges. The side lives as long as the tunnel,
through its client's reconnect grace period, so a reconnecting client keeps its port.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Protocol


class Visitor(Protocol):
    """A visitor connection (relay/pool/tcp_visitor.py), as the side closes it."""

    def abort(self, reason: str) -> None: ...


@dataclass(eq=False, slots=True)
class TcpSide:
    port: int  # the public port of RELAY_TCP_PORTS it listens on
    server: asyncio.Server | None = None
    visitors: set[Visitor] = field(default_factory=set)

    @property
    def live(self) -> int:
        """Visitor connections open now (waiting for a pool connection, or carried)."""
        return len(self.visitors)

    def close(self, reason: str) -> None:
        """Stop listening and drop every visitor connection (the tunnel closed)."""
        if self.server is not None:
            self.server.close()
            self.server = None
        for visitor in list(self.visitors):
            visitor.abort(reason)
        self.visitors.clear()
