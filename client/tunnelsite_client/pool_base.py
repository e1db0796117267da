"""What both pools of a registration share (HTTP's `pool.Pool`, TCP's `tcp_pool.TcpPool`):
opening a pool connection (upgraded, or raw with --raw-pool), the retry delays of a worker
whose connections fail or close at once, and the moment the relay looks gone.

A worker calls `connect(retry)` for each pool connection it opens and `closed(retry, ...)`
when one ends; both return None while the worker should go on, and the pool is broken
(`broken`, `broken_reason`) when the relay looks gone.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass

from .address_watch import AddressWatch
from .connect import RelayConnector
from .http import describe_error
from .limits import (
    FAILURES_BEFORE_BROKEN,
    FIRST_REOPEN_DELAY_S,
    KEEPALIVE_COUNT,
    KEEPALIVE_IDLE_S,
    KEEPALIVE_INTERVAL_S,
    MAX_CONNECT_FAILURES,
    MAX_REOPEN_DELAY_S,
    POOL_CONNECT_TIMEOUT_S,
    QUICK_CLOSE_S,
)
from .pool_upgrade import PoolRefused, open_upgraded
from .registration import Registration

Streams = tuple[asyncio.StreamReader, asyncio.StreamWriter]


def enable_keepalive(writer: asyncio.StreamWriter) -> None:
    sock = writer.get_extra_info("socket")
    if sock is None:
        return
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        if hasattr(socket, "TCP_KEEPIDLE"):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, KEEPALIVE_IDLE_S)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, KEEPALIVE_INTERVAL_S)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, KEEPALIVE_COUNT)


@dataclass
class Retry:
    """One worker's failures in a row and its next reopen delay."""

    failures: int = 0
    delay: float = 0.0

    def next_delay(self) -> float:
        self.delay = min(MAX_REOPEN_DELAY_S, max(FIRST_REOPEN_DELAY_S, self.delay * 2))
        return self.delay


class PoolBase:
    """The pool connections of one registration: opened, counted, given up on."""

    def __init__(
        self,
        registration: Registration,
        on_sockets: Callable[[int], None],
        connector: RelayConnector | None = None,
    ) -> None:
        self.registration = registration
        self.on_sockets = on_sockets  # told the number of sockets up after each change
        self.connector = connector or RelayConnector()  # the relay's TLS and a proxy
        self.watch = AddressWatch()  # the local addresses of this pool's connections
        self.up = 0
        self.healthy = False  # a socket stayed up a while or carried traffic
        self.broken = asyncio.Event()
        self.broken_reason = ""
        self.last_failure = ""

    async def run(self) -> str:
        """Run until the relay looks gone; returns why. Cancel to stop."""
        raise NotImplementedError

    def _break(self, reason: str) -> None:
        if not self.broken.is_set():
            self.broken_reason = reason
            self.broken.set()

    def _set_up(self, delta: int) -> None:
        self.up += delta
        self.on_sockets(self.up)

    async def _open(self) -> Streams:
        """One pool connection: an upgrade on the relay's own port when the registration
        gave a pool URL (tunnelsite relays), else a raw socket to its pool port."""
        reg = self.registration
        if reg.pool_url is not None:
            return await open_upgraded(self.connector, reg.pool_url, reg.pool_secret)
        return await self.connector.open(reg.pool_host, reg.port, False)

    def _where(self) -> str:
        reg = self.registration
        return reg.pool_url if reg.pool_url is not None else f"{reg.pool_host}:{reg.port}"

    async def connect(self, retry: Retry) -> Streams | None:
        """A new pool connection (keepalive on), after as many tries as it takes; None when
        the pool broke meanwhile (the worker then ends)."""
        while True:
            try:
                async with asyncio.timeout(POOL_CONNECT_TIMEOUT_S):
                    reader, writer = await self._open()
            except PoolRefused as exc:
                self.last_failure = f"pool connection to {self._where()}: {exc.message}"
                if exc.registration_gone:  # a newer registration, or the tunnel closed
                    self._break(self.last_failure)
                    return None
                retry.failures += 1
                if retry.failures >= MAX_CONNECT_FAILURES:
                    self._break(self.last_failure)
                    return None
            except (OSError, TimeoutError) as exc:
                retry.failures += 1
                reason = describe_error(exc)
                self.last_failure = f"pool connection to {self._where()}: {reason}"
                if (
                    self.up == 0
                    and retry.failures >= FAILURES_BEFORE_BROKEN
                    or retry.failures >= MAX_CONNECT_FAILURES
                ):
                    self._break(self.last_failure)
                    return None
            else:
                enable_keepalive(writer)
                return reader, writer
            await asyncio.sleep(retry.next_delay())

    async def closed(self, retry: Retry, started: float, carried: bool) -> bool:
        """A pool connection opened at `started` (monotonic) ended; `carried`: it carried
        traffic. Waits before the next one if it closed at once; False: the pool broke."""
        if carried or time.monotonic() - started >= QUICK_CLOSE_S:
            self.healthy = True
            retry.failures, retry.delay = 0, 0.0
            return True  # a normal close: reopen at once
        retry.failures += 1
        self.last_failure = "the relay closed a pool connection at once"
        if self.up == 0 and retry.failures >= FAILURES_BEFORE_BROKEN:
            self._break(self.last_failure)
            return False
        await asyncio.sleep(retry.next_delay())
        return True
