"""The connection to the local app, with the same small face over plain TCP and TLS.

Why not `asyncio.open_connection`: when a write fails (the app answered early, e.g. a
413, and closed without reading the upload), a stream transport closes the socket and
drops what the kernel had received, so the visitor would get a 502 instead of the app's
answer. Plain TCP therefore uses the socket directly (readiness + `recv`, `sock_sendall`):
a failed send leaves the received answer readable. TLS goes through a small Protocol
that at least keeps every byte it was handed.

Connections are kept alive between requests by the proxy. A kept one is watched while
idle (`park`): bytes or the end of the stream then call the proxy back at once. Right
before it is reused, `idle_state()` checks once more (what arrived but the loop has not
seen yet): still good, closed by the app, or holding bytes the app sent while nobody
asked. `AddressCache` looks the app's host name up only once.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
from collections.abc import Callable
from typing import Any

# What an idle kept connection holds right before its reuse (`idle_state`).
QUIET = "quiet"  # nothing: it may carry the next request
CLOSED = "closed"  # the app closed it (keep-alive timeout) or it failed: open a new one
STRAY = "stray"  # bytes the app sent while nobody asked: a late answer to someone else

# Stop reading from the app past this many unread bytes; resume below the low mark.
READ_HIGH_WATER_BYTES = 256 * 1024
READ_LOW_WATER_BYTES = 64 * 1024


class _Protocol(asyncio.Protocol):
    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.eof = False
        self.error: BaseException | None = None
        self.lost = False
        self.paused = False
        self.readable = asyncio.Event()
        self.writable = asyncio.Event()
        self.writable.set()
        self.on_idle: Callable[[], None] | None = None  # set while the connection is parked

    def _idle_news(self) -> None:
        on_idle, self.on_idle = self.on_idle, None
        if on_idle is not None:
            on_idle()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        self.readable.set()
        if len(self.buffer) > READ_HIGH_WATER_BYTES and self.transport and not self.paused:
            self.paused = True
            self.transport.pause_reading()
        self._idle_news()

    def eof_received(self) -> bool:
        self.eof = True
        self.readable.set()
        self._idle_news()
        return False  # close: an app that ended its side has nothing more to say

    def connection_lost(self, exc: BaseException | None) -> None:
        self.eof = self.lost = True
        self.error = exc
        self.readable.set()
        self.writable.set()
        self._idle_news()

    def pause_writing(self) -> None:
        self.writable.clear()

    def resume_writing(self) -> None:
        self.writable.set()


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
            await self.loop.sock_sendall(self.sock, data)
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


class TLSConnection:
    """TLS: the same face over an asyncio Protocol."""

    def __init__(self, transport: asyncio.Transport, protocol: _Protocol) -> None:
        self.transport = transport
        self.protocol = protocol

    async def read(self, limit: int) -> bytes:
        """Up to `limit` bytes; b"" at the end. Bytes received before an error come
        first; the error (OSError) is raised only once they are all read."""
        proto = self.protocol
        while not proto.buffer and not proto.eof:
            proto.readable.clear()
            await proto.readable.wait()
        if proto.buffer:
            data = bytes(proto.buffer[:limit])
            del proto.buffer[:limit]
            if proto.paused and len(proto.buffer) < READ_LOW_WATER_BYTES and not proto.lost:
                proto.paused = False
                self.transport.resume_reading()
            return data
        if isinstance(proto.error, OSError):
            raise proto.error
        return b""

    def write(self, data: bytes) -> None:
        if self.protocol.lost or self.transport.is_closing():
            raise ConnectionResetError("the local app closed the connection")
        self.transport.write(data)

    async def drain(self) -> None:
        await self.protocol.writable.wait()
        if self.protocol.lost:
            raise ConnectionResetError("the local app closed the connection")

    def is_closing(self) -> bool:
        return self.protocol.lost or self.transport.is_closing()

    def park(self, on_idle: Callable[[], None]) -> None:
        self.protocol.on_idle = on_idle

    def unpark(self) -> None:
        self.protocol.on_idle = None

    def idle_state(self) -> str:
        proto = self.protocol
        if proto.buffer:
            return STRAY
        return CLOSED if self.is_closing() or proto.eof else QUIET

    def close(self) -> None:
        self.protocol.on_idle = None
        self.transport.close()


LocalConnection = SocketConnection | TLSConnection
_AddrInfo = tuple[int, int, int, str, tuple[Any, ...]]


class AddressCache:
    """The local app's addresses, looked up once (getaddrinfo runs in a worker thread, far
    too slow per request). The address that connected last is tried first; when none of
    them connects, the next connection looks the name up again."""

    def __init__(self) -> None:
        self.infos: list[_AddrInfo] = []

    async def lookup(self, host: str, port: int) -> list[_AddrInfo]:
        if not self.infos:
            loop = asyncio.get_running_loop()
            self.infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        return list(self.infos)

    def worked(self, info: _AddrInfo) -> None:
        if self.infos and self.infos[0] != info:
            with contextlib.suppress(ValueError):
                self.infos.remove(info)
            self.infos.insert(0, info)

    def forget(self) -> None:
        self.infos = []


async def connect(
    host: str,
    port: int,
    ssl_context: ssl.SSLContext | None = None,
    addresses: AddressCache | None = None,
) -> LocalConnection:
    """Connect to the local app, trying each address of `host` in turn."""
    loop = asyncio.get_running_loop()
    cache = addresses or AddressCache()
    infos = await cache.lookup(host, port)
    error: OSError = OSError(f"cannot resolve {host}")
    for info in infos:
        family, kind, proto, _, address = info
        sock = socket.socket(family, kind, proto)
        sock.setblocking(False)
        try:
            await loop.sock_connect(sock, address)
        except OSError as exc:
            sock.close()
            error = exc
            continue
        except BaseException:
            sock.close()
            raise
        cache.worked(info)
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if ssl_context is None:
            return SocketConnection(sock)
        try:
            transport, protocol = await loop.create_connection(
                _Protocol, sock=sock, ssl=ssl_context, server_hostname=host
            )
        except BaseException:
            sock.close()
            raise
        return TLSConnection(transport, protocol)  # type: ignore[arg-type]
    cache.forget()
    raise error
