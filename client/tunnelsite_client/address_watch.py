"""Whether a pool's connections still leave from an address of this machine.

When the machine moves to another network its old address goes, and connections made from
it are dead: their packets can no longer leave, the relay's cannot arrive, and neither end
hears of it until TCP keepalive gives up. `AddressWatch.gone` returns as soon as the address
of a connection is gone, so the pool closes it and opens another from the new address (the
pool secret, not the address, binds it to the tunnel). One watch serves all of a pool's
connections: each distinct local address is checked once per LOCAL_ADDRESS_CHECK_S (one
bind(2) of a throwaway socket, nothing sent) by one task, however many connections share
it; with no connection waiting, nothing is checked and no task runs.
"""

from __future__ import annotations

import asyncio
import errno
import socket
from collections.abc import Callable

from .limits import LOCAL_ADDRESS_CHECK_S
from .tasks import cancel

Address = tuple[int, str]  # (socket family, address)


def is_local(family: int, address: str) -> bool:
    """Whether `address` is still one of this machine's (it can be bound)."""
    try:
        with socket.socket(family, socket.SOCK_DGRAM) as probe:
            probe.bind((address, 0))
    except OSError as exc:
        return exc.errno != errno.EADDRNOTAVAIL
    return True


def local_address(writer: asyncio.StreamWriter) -> Address | None:
    """The local address of `writer`'s connection, if it is an IP one; None also when the
    socket cannot say (closed meanwhile): such a connection has no address to watch."""
    sock = writer.get_extra_info("socket")
    if sock is None or sock.family not in (socket.AF_INET, socket.AF_INET6):
        return None
    try:
        return sock.family, str(sock.getsockname()[0])
    except OSError:
        return None


class AddressWatch:
    """The local addresses of one pool's connections, watched by one task.

    `check(family, address)` says whether an address is still this machine's (is_local);
    `interval_s` is the time between two checks of an address."""

    def __init__(
        self,
        check: Callable[[int, str], bool] = is_local,
        interval_s: float = LOCAL_ADDRESS_CHECK_S,
    ) -> None:
        self._check = check
        self._interval_s = interval_s
        self._gone: dict[Address, asyncio.Future[None]] = {}
        self._waiting: dict[Address, int] = {}  # connections waiting on each address
        self._task: asyncio.Task[None] | None = None

    @property
    def watched(self) -> set[Address]:
        """The addresses checked now."""
        return set(self._gone)

    @property
    def running(self) -> bool:
        """Whether the watch's task runs (only while some connection waits)."""
        return self._task is not None and not self._task.done()

    async def gone(self, writer: asyncio.StreamWriter) -> None:
        """Return once the local address of `writer`'s connection is no longer this
        machine's; never, for a connection without one. Cancel to stop waiting."""
        address = local_address(writer)
        if address is None:
            await asyncio.Event().wait()
            return
        future = self._gone.get(address)
        if future is None:
            future = self._gone[address] = asyncio.get_running_loop().create_future()
        self._waiting[address] = self._waiting.get(address, 0) + 1
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._watch())
        try:
            await asyncio.shield(future)  # a cancelled waiter leaves the others theirs
        finally:
            left = self._waiting.get(address, 1) - 1
            if left > 0:
                self._waiting[address] = left
            else:  # no connection from there any more: stop checking it
                self._waiting.pop(address, None)
                if self._gone.get(address) is future:
                    del self._gone[address]

    async def _watch(self) -> None:
        while self._gone:
            await asyncio.sleep(self._interval_s)
            for address, future in list(self._gone.items()):
                if not self._check(*address):
                    del self._gone[address]
                    if not future.done():
                        future.set_result(None)

    async def close(self) -> None:
        """Stop the watch; connections still waiting are woken by CancelledError."""
        task, self._task = self._task, None
        if task is not None:
            await cancel(task)
        for future in self._gone.values():
            future.cancel()
        self._gone.clear()
        self._waiting.clear()
