"""Keep `max_conn_count` pool sockets open to the relay, each serving the local app.

Each socket that closes is reopened; one that closes again and again without carrying a
request is reopened after a growing delay, so the client never spins. When the relay
looks gone (connections refused with no socket up, or every socket closing at once), the
pool stops and reports why, and the tunnel registers again.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import Callable

from .address_watch import AddressWatch
from .connect import RelayConnector
from .exchange import PoolSocketProxy
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
from .target import LocalTarget, ProxyObserver


def _enable_keepalive(writer: asyncio.StreamWriter) -> None:
    sock = writer.get_extra_info("socket")
    if sock is None:
        return
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        if hasattr(socket, "TCP_KEEPIDLE"):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, KEEPALIVE_IDLE_S)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, KEEPALIVE_INTERVAL_S)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, KEEPALIVE_COUNT)


class Pool:
    """The pool sockets of one registration."""

    def __init__(
        self,
        registration: Registration,
        target: LocalTarget,
        observer: ProxyObserver,
        on_sockets: Callable[[int], None],
        connector: RelayConnector | None = None,
    ) -> None:
        self.registration = registration
        self.target = target
        self.observer = observer
        self.on_sockets = on_sockets  # told the number of sockets up after each change
        self.connector = connector or RelayConnector()  # the relay's TLS and a proxy
        self.watch = AddressWatch()  # the local addresses of this pool's connections
        self.up = 0
        self.healthy = False  # a socket stayed up a while or carried a request
        self.broken = asyncio.Event()
        self.broken_reason = ""
        self.last_failure = ""

    async def run(self) -> str:
        """Run until the relay looks gone; returns why. Cancel to stop."""
        size = self.registration.max_conn_count
        workers = [asyncio.create_task(self._worker()) for _ in range(size)]
        try:
            await self.broken.wait()
            return self.broken_reason
        finally:
            for task in workers:
                task.cancel()
            await asyncio.gather(*workers, return_exceptions=True)
            await self.watch.close()

    def _break(self, reason: str) -> None:
        if not self.broken.is_set():
            self.broken_reason = reason
            self.broken.set()

    def _set_up(self, delta: int) -> None:
        self.up += delta
        self.on_sockets(self.up)

    async def _open(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """One pool connection: an upgrade on the relay's own port when the registration
        gave a pool URL (tunnelsite relays), else a raw socket to its pool port."""
        reg = self.registration
        if reg.pool_url is not None:
            return await open_upgraded(self.connector, reg.pool_url, reg.pool_secret)
        return await self.connector.open(reg.pool_host, reg.port, False)

    def _where(self) -> str:
        reg = self.registration
        return reg.pool_url if reg.pool_url is not None else f"{reg.pool_host}:{reg.port}"

    async def _worker(self) -> None:
        failures = 0
        delay = 0.0
        while True:
            started = time.monotonic()
            try:
                async with asyncio.timeout(POOL_CONNECT_TIMEOUT_S):
                    reader, writer = await self._open()
            except PoolRefused as exc:
                self.last_failure = f"pool connection to {self._where()}: {exc.message}"
                if exc.registration_gone:  # a newer registration, or the tunnel closed
                    self._break(self.last_failure)
                    return
                failures += 1
                if failures >= MAX_CONNECT_FAILURES:
                    self._break(self.last_failure)
                    return
                delay = min(MAX_REOPEN_DELAY_S, max(FIRST_REOPEN_DELAY_S, delay * 2))
                await asyncio.sleep(delay)
                continue
            except (OSError, TimeoutError) as exc:
                failures += 1
                reason = describe_error(exc)
                self.last_failure = f"pool connection to {self._where()}: {reason}"
                if (
                    self.up == 0
                    and failures >= FAILURES_BEFORE_BROKEN
                    or failures >= MAX_CONNECT_FAILURES
                ):
                    self._break(self.last_failure)
                    return
                delay = min(MAX_REOPEN_DELAY_S, max(FIRST_REOPEN_DELAY_S, delay * 2))
                await asyncio.sleep(delay)
                continue
            _enable_keepalive(writer)
            proxy = PoolSocketProxy(reader, writer, self.target, self.observer)
            self._set_up(+1)
            try:
                serving = asyncio.create_task(proxy.run())
                # The machine moved: this connection is dead; close it, open one from here.
                moved = asyncio.create_task(self.watch.gone(writer))
                try:
                    done, _ = await asyncio.wait({serving}, timeout=QUICK_CLOSE_S)
                    if not done:
                        self.healthy = True
                    await asyncio.wait({serving, moved}, return_when=asyncio.FIRST_COMPLETED)
                    if serving.done():
                        await serving
                except Exception as exc:  # a bug in one exchange must not stop the pool
                    self.last_failure = f"internal error: {exc!r}"
                finally:
                    moved.cancel()
                    if not serving.done():
                        serving.cancel()
                        with contextlib.suppress(BaseException):
                            await serving
            finally:
                writer.close()
                self._set_up(-1)
            if proxy.requests or time.monotonic() - started >= QUICK_CLOSE_S:
                self.healthy = True
                failures, delay = 0, 0.0
                continue  # a normal close: reopen at once
            failures += 1
            self.last_failure = "the relay closed a pool connection at once"
            if self.up == 0 and failures >= FAILURES_BEFORE_BROKEN:
                self._break(self.last_failure)
                return
            delay = min(MAX_REOPEN_DELAY_S, max(FIRST_REOPEN_DELAY_S, delay * 2))
            await asyncio.sleep(delay)
