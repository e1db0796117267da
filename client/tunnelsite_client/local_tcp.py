"""Plain TCP to the local app, on the socket itself rather than a stream transport.

Why not `asyncio.open_connection`: when a write fails (the app answered early, e.g. a
413, and closed without reading the upload), a stream transport closes the socket and
drops what the kernel had received, so the visitor would get a 502 instead of the app's
answer. Here a read is readiness + `recv` and a write is `sock_sendall`: a failed send
leaves the received answer readable.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable

from .idle_state import CLOSED, QUIET, STRAY


class SocketConnection:
    """Plain TCP: read, write (sent by the next drain) and close, like a stream pair.

    A read waits for readability and then calls recv itself, so cancelling a read (a
    timeout, or the relay giving up) never loses bytes the kernel had received.
    """

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.loop = asyncio.get_running_loop()
        self.pending = bytearray()
        self.write_failed = False
        self.closed = False
        # The socket stays registered with the loop between reads (no epoll_ctl per
        # request); `_readable` wakes the read waiting, or reports a parked one.
        self._registered = False
        self._waiter: asyncio.Future[None] | None = None
        self._on_idle: Callable[[], None] | None = None

    async def read(self, limit: int) -> bytes:
        """Up to `limit` bytes; b"" at the end; OSError once received bytes are read."""
        while True:
            try:
                return self.sock.recv(limit)
            except (BlockingIOError, InterruptedError):
                pass
            ready = self._waiter = self.loop.create_future()
            self._register()
            try:
                await ready
            finally:
                self._waiter = None

    def park(self, on_idle: Callable[[], None]) -> None:
        """The connection is kept idle: call `on_idle` once if the app writes or closes."""
        self._on_idle = on_idle
        self._register()

    def unpark(self) -> None:
        self._on_idle = None

    def _register(self) -> None:
        if not self._registered and not self.closed:
            self.loop.add_reader(self.sock.fileno(), self._readable)
            self._registered = True

    def _unregister(self) -> None:
        if self._registered:
            self._registered = False
            self.loop.remove_reader(self.sock.fileno())

    def _readable(self) -> None:
        waiter, on_idle = self._waiter, self._on_idle
        if waiter is not None:
            if not waiter.done():
                waiter.set_result(None)
            return
        # Nobody reads now: stop watching (the level-triggered loop would call again and
        # again); a parked connection's owner is told, once.
        self._unregister()
        if on_idle is not None:
            self._on_idle = None
            on_idle()

    def write(self, data: bytes) -> None:
        if self.is_closing():
            raise ConnectionResetError("the local app closed the connection")
        self.pending += data

    async def drain(self) -> None:
        if not self.pending:
            return
        data, self.pending = bytes(self.pending), bytearray()
        try:
            try:
                sent = self.sock.send(data)  # nearly always all of it: no future, no wait
            except (BlockingIOError, InterruptedError):
                sent = 0
            if sent < len(data):
                await self.loop.sock_sendall(self.sock, data[sent:])
        except OSError:
            self.write_failed = True
            raise

    def is_closing(self) -> bool:
        return self.closed or self.write_failed

    def idle_state(self) -> str:
        """QUIET when an idle kept-alive connection can carry another request; CLOSED when
        the app ended it (or it failed); STRAY when the app sent bytes nobody asked for.
        One recv(MSG_PEEK) syscall, made right before the next request is written."""
        if self.is_closing():
            return CLOSED
        try:
            data = self.sock.recv(1, socket.MSG_PEEK)
        except (BlockingIOError, InterruptedError):
            return QUIET  # nothing to read: still open, and quiet
        except OSError:
            return CLOSED
        return STRAY if data else CLOSED

    def close(self) -> None:
        self._on_idle = None
        self._unregister()
        self.closed = True
        self.sock.close()
