"""Keep `max_conn_count` pool sockets open to the relay, each serving the local app.

Each socket that closes is reopened; one that closes again and again without carrying a
request is reopened after a growing delay, so the client never spins. When the relay
looks gone (connections refused with no socket up, or every socket closing at once), the
pool stops and reports why, and the tunnel registers again. Opening, retrying and giving
up are `pool_base.PoolBase`'s, shared with TCP tunnels' `tcp_pool.TcpPool`.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable

from .connect import RelayConnector
from .exchange import PoolSocketProxy
from .limits import QUICK_CLOSE_S
from .pool_base import PoolBase, Retry
from .registration import Registration
from .target import LocalTarget, ProxyObserver


class Pool(PoolBase):
    """The pool sockets of one registration."""

    def __init__(
        self,
        registration: Registration,
        target: LocalTarget,
        observer: ProxyObserver,
        on_sockets: Callable[[int], None],
        connector: RelayConnector | None = None,
    ) -> None:
        super().__init__(registration, on_sockets, connector)
        self.target = target
        self.observer = observer

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

    async def _worker(self) -> None:
        retry = Retry()
        while True:
            started = time.monotonic()
            streams = await self.connect(retry)
            if streams is None:
                return
            reader, writer = streams
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
            if not await self.closed(retry, started, bool(proxy.requests)):
                return
