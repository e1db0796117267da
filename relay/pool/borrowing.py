"""Borrowing a tunnel's pool sockets: one exchange at a time, within a visitor's share.

Visitors borrow an idle pool socket for one exchange and give it back. When none is idle
they wait in a bounded queue with a deadline; a waiter that gives up (visitor gone,
timeout) never takes a socket with it. That is the localtunnel server's lock-up, and the
reason `acquire` hands sockets over only to waiters that are still waiting.

One visitor address holds at most all but RELAY_SPARE_SOCKETS of the sockets, whatever
its traffic (slow downloads, WebSockets): past its share it waits like anyone else, and
a socket freed while it waits goes to the first waiter still within its share.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from relay.pool.socket import PoolSocket
from relay.protocol import RECONNECT_WAIT_S, RETRY_AFTER_BUSY_S, RETRY_AFTER_OFFLINE_S
from relay.stats import STATS


def sockets_beyond_spare(max_conn_count: int, connected: int, spare: int) -> int:
    """The sockets a client holds now, less `spare` (at least one): what one visitor may
    borrow at once, and how many WebSockets a tunnel carries. The client holds what it was
    told, or fewer (our lt opens 100 at most; an npm client that lost sockets for good does
    not replace them)."""
    sockets = min(max_conn_count, connected) or max_conn_count
    return max(1, sockets - spare)


class NoSocket(Exception):
    """No pool socket could be had; `status` says what the visitor gets."""

    def __init__(self, status: int, message: str, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.retry_after = retry_after


class Borrowing:
    """A part of relay.pool.tunnel.Tunnel: the state below is the tunnel's."""

    __slots__ = ()

    name: str
    client_id: str
    closed: bool
    max_conn_count: int
    registry: Any  # relay.pool.tunnel.Home
    connections: set[PoolSocket]
    idle: list[PoolSocket]
    waiters: list[tuple[asyncio.Future[PoolSocket], str]]
    held: dict[str, int]
    offline_since: float | None
    tcp: Any  # relay.pool.tcp_side.TcpSide | None: a TCP tunnel

    def share(self) -> int:
        """How many sockets one visitor address may hold: all but RELAY_SPARE_SOCKETS of
        those the client holds now (at least one). A TCP tunnel's visitor may hold them all:
        its connections are long (a database client's pool of 10 stays open for hours), and
        `lt tcp` opens its pool connections as visitors arrive, keeping only a few idle, so a
        share counted on those open made a second `psql` from one machine wait for a
        connection lt never opened. Who may connect at all is its CIDR rules' job."""
        if self.tcp is not None:
            return self.max_conn_count
        return sockets_beyond_spare(
            self.max_conn_count, len(self.connections), self.registry.settings.RELAY_SPARE_SOCKETS
        )

    async def acquire(self, wait_s: float, max_waiters: int, visitor: str = "") -> PoolSocket:
        """An idle socket for `visitor` (its address key), once it is within its share."""
        held = self.held.get(visitor, 0)
        if self.idle and held < self.share():
            while self.idle:
                conn = self.idle.pop()
                # A raw pipe's (npm) socket is checked for late bytes right before it serves.
                if not conn.closed and (self.client_id or conn.quiet()):
                    conn.busy = True
                    conn.holder = visitor
                    self.held[visitor] = held + 1
                    return conn
        if not self.connections:
            since = self.offline_since
            left = RECONNECT_WAIT_S - (time.monotonic() - since) if since is not None else 0.0
            if left <= 0:
                raise self._offline()
            wait_s = min(wait_s, left)  # its client is reconnecting: wait for a socket
        if len(self.waiters) >= max_waiters:
            STATS.busy += 1
            raise NoSocket(
                503,
                f"The tunnel {self.name} is too busy; try again shortly.",
                retry_after=RETRY_AFTER_BUSY_S,
            )
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[PoolSocket] = loop.create_future()
        entry = (waiter, visitor)
        self.waiters.append(entry)
        timer = loop.call_later(wait_s, _expire, waiter)
        try:
            return await waiter  # handed over by _hand_out, counted for `visitor` there
        except TimeoutError:
            if not self.connections:
                raise self._offline() from None
            if self.held.get(visitor, 0) >= self.share():
                STATS.over_share += 1
                raise NoSocket(
                    504,
                    f"This address holds too many of the tunnel {self.name}'s connections "
                    f"({self.share()}, all but those kept for other visitors); wait for your "
                    "other requests to finish.",
                ) from None
            STATS.no_socket += 1
            raise NoSocket(
                504, f"No connection of the tunnel {self.name} became free in time."
            ) from None
        except BaseException:
            # Cancelled (the visitor left) after a socket was already handed over: give
            # it back, or it would be lost to the pool for good.
            if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                self.release(waiter.result())
            raise
        finally:
            timer.cancel()
            try:
                self.waiters.remove(entry)
            except ValueError:
                pass

    def _offline(self) -> NoSocket:
        STATS.offline += 1
        return NoSocket(
            503,
            f"The tunnel {self.name} is not connected right now.",
            retry_after=RETRY_AFTER_OFFLINE_S,
        )

    def _unhold(self, conn: PoolSocket) -> None:
        visitor = conn.holder
        if visitor is None:
            return
        conn.holder = None
        count = self.held.get(visitor, 0) - 1
        if count > 0:
            self.held[visitor] = count
        else:
            self.held.pop(visitor, None)

    def release(self, conn: PoolSocket) -> None:
        """A healthy socket is free again: to the first waiter within its share, or idle."""
        self._unhold(conn)
        self._hand_out(conn)

    def discard(self, conn: PoolSocket) -> None:
        """A socket that cannot be reused: closed. Its visitor's place is free again, so a
        waiter of that address that was over its share may now take an idle socket."""
        self._unhold(conn)
        conn.abort()
        while self.idle and self.waiters:
            idle = self.idle.pop()
            if not self._hand_out(idle):
                return  # parked again: no waiter may take one

    def _hand_out(self, conn: PoolSocket) -> bool:
        """Give `conn` to the first visitor still waiting and within its share (True), or
        park it (False); waiters over their share keep their place in the queue."""
        if conn.closed or self.closed:
            conn.abort()
            return True
        conn.busy = False
        if self.waiters and not self.client_id and not conn.quiet():
            return True  # a raw pipe's client wrote or closed meanwhile: quiet() closed it
        if self.waiters:
            share = self.share()
            held = self.held
            for i, (waiter, visitor) in enumerate(self.waiters):
                if waiter.done():
                    continue  # gave up; removed by its own acquire
                count = held.get(visitor, 0)
                if count < share:
                    del self.waiters[i]
                    conn.busy = True
                    conn.holder = visitor
                    held[visitor] = count + 1
                    waiter.set_result(conn)
                    return True
        self.idle.append(conn)
        return False


def _expire(waiter: asyncio.Future[PoolSocket]) -> None:
    if not waiter.done():
        waiter.set_exception(TimeoutError())
