"""A TCP visitor connection's idle timeout: one timer per connection, re-armed lazily.

Each chunk only stores the time (`touch`); when the timer fires it re-arms itself for what
is left, so a busy connection costs one timer per idle period, not one per chunk.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable


class IdleTimer:
    __slots__ = ("timeout_s", "last", "_handle", "_on_idle")

    def __init__(self, timeout_s: float, on_idle: Callable[[], None]) -> None:
        self.timeout_s = timeout_s  # 0: never
        self.last = time.monotonic()
        self._handle: asyncio.TimerHandle | None = None
        self._on_idle = on_idle

    def start(self) -> None:
        if self.timeout_s > 0 and self._handle is None:
            self._arm(self.timeout_s)

    def touch(self, now: float) -> None:
        self.last = now

    def cancel(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _arm(self, delay: float) -> None:
        self._handle = asyncio.get_running_loop().call_later(delay, self._fire)

    def _fire(self) -> None:
        self._handle = None
        left = self.last + self.timeout_s - time.monotonic()
        if left > 0:
            self._arm(left)
        else:
            self._on_idle()
