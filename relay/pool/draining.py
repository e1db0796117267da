"""How the registry stops: requests in flight are counted, a drain stops taking tunnels and
waits for them (relay/run/runner.py gives it RELAY_DRAIN_S), then the shutdown closes every
tunnel and writes their last counters.
"""

from __future__ import annotations

import asyncio
from typing import Protocol

from relay.pool.tunnel import Tunnel


class Stoppable(Protocol):
    async def stop(self) -> None: ...


class DrainHost(Protocol):
    """What the drain needs of its registry: its door, its tunnels, closing one, and its
    flusher to stop last."""

    accepting: bool  # registrations are refused once False

    @property
    def tunnels(self) -> dict[str, Tunnel]: ...

    @property
    def flusher(self) -> Stoppable: ...

    def close(self, tunnel: Tunnel, reason: str) -> None: ...


class Drain:
    """Owned by relay.pool.registry.Registry: the count of requests in flight."""

    def __init__(self, host: DrainHost) -> None:
        self.host = host
        self.in_flight = 0
        self._idle = asyncio.Event()
        self._idle.set()

    # --- in-flight requests -----------------------------------------------------------------
    def request_started(self) -> None:
        self.in_flight += 1
        self._idle.clear()

    def request_finished(self) -> None:
        self.in_flight -= 1
        if self.in_flight <= 0:
            self._idle.set()

    async def drain(self, timeout: float) -> bool:
        """Stop taking tunnels (their raw pool listeners and TCP tunnels' public listeners
        close: no new pool connection, no new TCP visitor), wait for in-flight requests;
        True if all finished in time. TCP visitor connections open now are not in flight:
        the shutdown resets them."""
        self.host.accepting = False
        for tunnel in self.host.tunnels.values():
            if tunnel.server is not None:
                tunnel.server.close()
            if tunnel.tcp is not None and tunnel.tcp.server is not None:
                tunnel.tcp.server.close()
        try:
            async with asyncio.timeout(timeout):
                await self._idle.wait()
            return True
        except TimeoutError:
            return False

    async def shutdown(self, reason: str = "relay stopped") -> None:
        for tunnel in list(self.host.tunnels.values()):
            self.host.close(tunnel, reason)
        await self.host.flusher.stop()
