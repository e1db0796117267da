"""The connection to the local app, with the same small face over plain TCP and TLS.

Why not `asyncio.open_connection`: when a write fails (the app answered early, e.g. a
413, and closed without reading the upload), a stream transport closes the socket and
drops what the kernel had received, so the visitor would get a 502 instead of the app's
answer. Plain TCP therefore uses the socket directly (`loop.sock_recv`/`sock_sendall`):
a failed send leaves the received answer readable. TLS goes through a small Protocol
that at least keeps every byte it was handed.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl

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

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        self.readable.set()
        if len(self.buffer) > READ_HIGH_WATER_BYTES and self.transport and not self.paused:
            self.paused = True
            self.transport.pause_reading()

    def eof_received(self) -> bool:
        self.eof = True
        self.readable.set()
        return False  # close: an app that ended its side has nothing more to say

    def connection_lost(self, exc: BaseException | None) -> None:
        self.eof = self.lost = True
        self.error = exc
        self.readable.set()
        self.writable.set()

    def pause_writing(self) -> None:
        self.writable.clear()

    def resume_writing(self) -> None:
        self.writable.set()


class SocketConnection:
    """Plain TCP: read, write (sent by the next drain) and close, like a stream pair."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.loop = asyncio.get_running_loop()
        self.pending = bytearray()
        self.write_failed = False
        self.closed = False

    async def read(self, limit: int) -> bytes:
        """Up to `limit` bytes; b"" at the end; OSError once received bytes are read."""
        return await self.loop.sock_recv(self.sock, limit)

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

    def close(self) -> None:
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

    def close(self) -> None:
        self.transport.close()


LocalConnection = SocketConnection | TLSConnection


async def connect(
    host: str, port: int, ssl_context: ssl.SSLContext | None = None
) -> LocalConnection:
    """Connect to the local app, trying each address of `host` in turn."""
    loop = asyncio.get_running_loop()
    if ssl_context is not None:
        transport, protocol = await loop.create_connection(
            _Protocol, host, port, ssl=ssl_context, server_hostname=host
        )
        return TLSConnection(transport, protocol)  # type: ignore[arg-type]
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    error: OSError = OSError(f"cannot resolve {host}")
    for family, kind, proto, _, address in infos:
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
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return SocketConnection(sock)
    raise error
