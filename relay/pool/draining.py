"""How the registry stops: requests in flight are counted, a drain stops taking tunnels and
waits for them (relay/run/runner.py gives it RELAY_DRAIN_S), then the shutdown closes every
tunnel and writes their last counters.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

from relay.pool.tunnel import Tunnel


class Draining:
    """A part of relay.pool.registry.Registry: the state below is the registry's."""

    tunnels: dict[str, Tunnel]
    accepting: bool
    in_flight: int
    _idle_event: asyncio.Event
    _flusher: asyncio.Task[None] | None
    close: Callable[[Tunnel, str], None]
    flush: Callable[[], Coroutine[Any, Any, int]]

    # --- in-flight requests -----------------------------------------------------------------
    def request_started(self) -> None:
        self.in_flight += 1
        self._idle_event.clear()

    def request_finished(self) -> None:
        self.in_flight -= 1
        if self.in_flight <= 0:
            self._idle_event.set()

    async def drain(self, timeout: float) -> bool:
        """Stop taking tunnels, wait for in-flight requests; True if all finished in time."""
        self.accepting = False
        for tunnel in self.tunnels.values():
            if tunnel.server is not None:
                tunnel.server.close()
        try:
            async with asyncio.timeout(timeout):
                await self._idle_event.wait()
            return True
        except TimeoutError:
            return False

    async def shutdown(self, reason: str = "relay stopped") -> None:
        for tunnel in list(self.tunnels.values()):
            self.close(tunnel, reason)
        if self._flusher is not None:
            self._flusher.cancel()
            self._flusher = None
        await self.flush()
