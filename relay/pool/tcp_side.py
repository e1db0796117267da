"""A TCP tunnel's public side (`lt tcp`): its port's listener and the visitors connected now.

A `Tunnel` with a `tcp` is a TCP tunnel; its pool connections carry frames
(relay/pool/tcp_frames.py) instead of HTTP exchanges. The side lives as long as the tunnel,
through its client's reconnect grace period, so a reconnecting client keeps its port.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any, Protocol

logger = logging.getLogger(__name__)


class Visitor(Protocol):
    """A visitor connection (relay/pool/tcp_visitor.py), as the side closes it."""

    def abort(self, reason: str) -> None: ...


@dataclass(eq=False, slots=True)
class TcpSide:
    port: int  # the public port of RELAY_TCP_PORTS it listens on
    server: asyncio.Server | None = None
    visitors: set[Visitor] = field(default_factory=set)
    # Open visitor connections per address (relay.pool.quota.address_key), for
    # RELAY_MAX_CONNECTIONS_PER_IP: past it a new one is closed at once.
    per_address: dict[str, int] = field(default_factory=dict)
    # The visitors' tasks (waiting, then carried), so none ends unseen (track_task).
    tasks: set[asyncio.Task[Any]] = field(default_factory=set)

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
        self.per_address.clear()

    def count_in(self, key: str, limit: int) -> bool:
        """Count a new visitor connection from `key` (False, uncounted, at `limit`; 0: none)."""
        held = self.per_address.get(key, 0)
        if limit and held >= limit:
            return False
        self.per_address[key] = held + 1
        return True

    def count_out(self, key: str) -> None:
        held = self.per_address.get(key, 0) - 1
        if held > 0:
            self.per_address[key] = held
        else:
            self.per_address.pop(key, None)

    def track(self, task: asyncio.Task[Any]) -> None:
        """Keep `task` until it ends, then read its end so nothing is "never retrieved"."""
        self.tasks.add(task)
        task.add_done_callback(self._forget)

    def _forget(self, task: asyncio.Task[Any]) -> None:
        self.tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.error("a TCP visitor's task failed", exc_info=task.exception())
