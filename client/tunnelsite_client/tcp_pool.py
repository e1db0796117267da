"""The pool connections of a TCP tunnel (`lt tcp`): TCP_SPARE_CONNECTIONS idle ones waiting
for visitors, one more opened each time one starts carrying a visitor, never more than the
registration's max_conn_count; an idle one past the spares closes after TCP_SPARE_IDLE_S.

Each connection serves one visitor connection at a time (tcp_conversation.py). Opening,
retrying and giving up on the relay are `pool_base.PoolBase`'s, as for HTTP tunnels.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from .connect import RelayConnector
from .limits import TCP_SPARE_CONNECTIONS, TCP_SPARE_IDLE_S
from .pool_base import PoolBase, Retry
from .registration import Registration
from .tcp_conversation import TcpConnection
from .tcp_log import TcpObserver


class TcpPool(PoolBase):
    """The pool connections of one TCP registration."""

    def __init__(
        self,
        registration: Registration,
        local_host: str,
        local_port: int,
        observer: TcpObserver,
        on_sockets: Callable[[int], None],
        connector: RelayConnector | None = None,
        *,
        spare: int = TCP_SPARE_CONNECTIONS,
        spare_idle_s: float = TCP_SPARE_IDLE_S,
    ) -> None:
        super().__init__(registration, on_sockets, connector)
        self.local_host = local_host
        self.local_port = local_port
        self.observer = observer
        self.spare = max(1, min(spare, registration.max_conn_count))
        self.spare_idle_s = spare_idle_s
        self.workers: set[asyncio.Task[None]] = set()
        # Workers that decided to end (an idle extra): no longer counted as free, at once,
        # so that extras timing out together never take the spares with them.
        self.retiring: set[asyncio.Task[None]] = set()
        self.busy = 0  # connections carrying a visitor

    async def run(self) -> str:
        """Run until the relay looks gone; returns why. Cancel to stop."""
        for _ in range(self.spare):
            self._spawn()
        try:
            await self.broken.wait()
            return self.broken_reason
        finally:
            workers = list(self.workers)
            for task in workers:
                task.cancel()
            await asyncio.gather(*workers, return_exceptions=True)
            await self.watch.close()

    @property
    def free(self) -> int:
        """Workers not carrying a visitor (idle, or opening their connection)."""
        return len(self.workers) - len(self.retiring) - self.busy

    def _spawn(self) -> None:
        task = asyncio.create_task(self._worker())
        self.workers.add(task)
        task.add_done_callback(self._gone)

    def _gone(self, task: asyncio.Task[None]) -> None:
        self.workers.discard(task)
        self.retiring.discard(task)

    def _retire(self, worker: asyncio.Task[None] | None) -> bool:
        """Whether `worker` ends (it is past the spares); if so it stops counting as free."""
        if worker is None or self.free <= self.spare:
            return False
        self.retiring.add(worker)
        return True

    def _on_busy(self, busy: bool) -> None:
        self.busy += 1 if busy else -1
        limit = self.registration.max_conn_count
        if busy and self.free < self.spare and len(self.workers) < limit:
            self._spawn()

    def _idle_timeout(self) -> float | None:
        """A connection past the spares waits this long for a visitor, the spares for ever."""
        return self.spare_idle_s if self.free > self.spare else None

    async def _worker(self) -> None:
        me = asyncio.current_task()
        retry = Retry()
        while not self.broken.is_set():
            started = time.monotonic()
            streams = await self.connect(retry)
            if streams is None:
                return
            reader, writer = streams
            connection = TcpConnection(
                reader, writer, self.local_host, self.local_port, self.observer
            )
            self._set_up(+1)
            serving = asyncio.create_task(
                connection.serve(self._idle_timeout, self._on_busy, lambda: self._retire(me))
            )
            # The machine moved: this connection is dead; close it, open one from here.
            moved = asyncio.create_task(self.watch.gone(writer))
            try:
                await asyncio.wait({serving, moved}, return_when=asyncio.FIRST_COMPLETED)
                why = "the local address is gone"
                if serving.done():
                    try:
                        why = serving.result()
                    except Exception as exc:  # a bug in one conversation must not stop the pool
                        why = f"internal error: {exc!r}"
            finally:
                # Closed first, so that a pool being stopped (this cancelled) closes it too.
                writer.close()
                self._set_up(-1)
                moved.cancel()
                serving.cancel()
                await asyncio.gather(moved, serving, return_exceptions=True)
            if why == "idle" or self._retire(me):
                return  # a connection past the spares: not reopened
            self.last_failure = why
            if not await self.closed(retry, started, connection.served > 0):
                return
