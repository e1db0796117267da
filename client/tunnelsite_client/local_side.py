"""The local app's side of a pool socket: the kept connection and its h11 parser.

Each pool socket keeps one keep-alive connection to the local app and reopens it lazily
(`connection`). A kept connection is parked while idle; if the app then writes bytes nobody
asked for, keep-alive is distrusted for the whole tunnel (keepalive.py).
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Awaitable, Callable

import h11

from .http import describe_error
from .idle_state import CLOSED, QUIET, STRAY
from .limits import CHUNK_BYTES, LOCAL_CONNECT_TIMEOUT_S, LOCAL_MAX_HEADER_BYTES
from .local import AddressCache, LocalConnection, connect
from .target import LocalTarget, ProxyObserver

# How a connection to the local app is opened: local.connect, or a test's double.
Dial = Callable[[str, int, ssl.SSLContext | None, AddressCache | None], Awaitable[LocalConnection]]


class LocalFailed(Exception):
    """The local app could not be reached or broke HTTP; the visitor gets a 502/504."""

    def __init__(self, reason: str, status: int = 502, garbled: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status
        self.garbled = garbled  # the app's bytes were not HTTP


class LocalSide:
    def __init__(self, target: LocalTarget, observer: ProxyObserver, dial: Dial = connect) -> None:
        self.target = target
        self.observer = observer
        self.dial = dial
        # The kept connection to the local app and its parser (None: open one when needed).
        self.conn: LocalConnection | None = None
        self.h11: h11.Connection | None = None

    async def connection(self) -> tuple[LocalConnection, h11.Connection, bool]:
        """The kept connection if it is still good, else a new one; True if kept."""
        if self.conn is not None and self.h11 is not None:
            # Checked now, as the next request is about to be written, not only when the
            # last answer ended: a late second answer may have arrived since.
            self.conn.unpark()
            keep = self.target.keepalive.enabled
            state = self.conn.idle_state() if keep else CLOSED
            if state == QUIET:
                return self.conn, self.h11, True
            self.close()
            if state == STRAY:
                self.distrust("it wrote to an idle connection")
        target = self.target
        try:
            async with asyncio.timeout(LOCAL_CONNECT_TIMEOUT_S):
                conn = await self.dial(
                    target.host, target.port, target.ssl_context, target.addresses
                )
        except TimeoutError as exc:
            raise LocalFailed(f"no connection within {LOCAL_CONNECT_TIMEOUT_S:g} s") from exc
        except OSError as exc:  # ssl.SSLError is an OSError too
            raise LocalFailed(describe_error(exc, local=True)) from exc
        self.observer.local_reachable()
        local = h11.Connection(h11.CLIENT, max_incomplete_event_size=LOCAL_MAX_HEADER_BYTES)
        self.conn, self.h11 = conn, local
        return conn, local, False

    def keep(self, conn: LocalConnection, local: h11.Connection) -> None:
        """The answer ended cleanly: keep the connection for the next request."""
        local.start_next_cycle()
        conn.park(self._idle_news)

    def keep_idle(self, conn: LocalConnection) -> None:
        """Keep a connection whose parser never left IDLE (the fast path answered)."""
        conn.park(self._idle_news)

    def distrust(self, how: str) -> None:
        """The app sent bytes nobody asked for: keep-alive off for the rest of the run."""
        if self.target.keepalive.distrust():
            self.observer.keepalive_off(how)

    def _idle_news(self) -> None:
        """The kept connection became readable while idle: the app closed it, or wrote
        bytes that nobody asked for (an answer to no one: from now on, no reuse)."""
        conn = self.conn
        if conn is None:
            return
        state = conn.idle_state()
        if state == QUIET:
            conn.park(self._idle_news)  # woken for nothing (a spurious wake-up)
            return
        self.close()
        if state == STRAY:
            self.distrust("it wrote to an idle connection")

    def close(self) -> None:
        conn, self.conn, self.h11 = self.conn, None, None
        if conn is not None:
            conn.close()

    @staticmethod
    async def read(conn: LocalConnection) -> bytes:
        try:
            return await conn.read(CHUNK_BYTES)
        except OSError as exc:
            raise LocalFailed(exc.strerror or str(exc)) from exc
