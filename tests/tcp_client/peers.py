"""The peers of `lt tcp`'s pool connections in these tests, all on real loopback sockets:
the relay's side of a pool connection (`RelayEnd`, framing by hand), and local apps (an
echo server, one that answers after the visitor's EOF, one that floods, one that resets)."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import socket
import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

from harness.waiting import IO_TIMEOUT_S

from tunnelsite_client.limits import TCP_DATA, TCP_EOF
from tunnelsite_client.tcp_frames import FrameReader, data_frames, frame
from tunnelsite_client.tcp_log import TcpConnectionLog

from .listener import Listener

READ_BYTES = 64 * 1024


class RelayEnd:
    """The relay's end of one pool connection: frames written and read by the test."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.frames = FrameReader()
        self.pending: list[tuple[bytes, bytes]] = []

    async def send(self, kind: bytes, payload: bytes = b"") -> None:
        self.writer.write(frame(kind, payload))
        await self.writer.drain()

    async def send_data(self, data: bytes) -> None:
        self.writer.writelines(data_frames(data))
        await self.writer.drain()

    async def send_raw(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def next(self) -> tuple[bytes, bytes] | None:
        """The next frame (or DATA piece) from lt; None when lt closed the connection."""
        async with asyncio.timeout(IO_TIMEOUT_S):
            while not self.pending:
                data = await self.reader.read(READ_BYTES)
                if not data:
                    return None
                self.pending.extend(self.frames.feed(data))
        return self.pending.pop(0)

    async def data_until_eof(self) -> tuple[bytes, bytes]:
        """lt's DATA up to its EOF (or CLOSE): the bytes, and the frame that ended them."""
        received = bytearray()
        while True:
            got = await self.next()
            if got is None:
                return bytes(received), b""
            kind, payload = got
            if kind != TCP_DATA:
                return bytes(received), kind
            received += payload

    async def exchange(self, payload: bytes) -> tuple[bytes, bytes]:
        """Send `payload` and EOF while reading lt's DATA to its EOF (both at once, as a
        visitor that writes and reads); what came back, and the frame that ended it."""

        async def send() -> None:
            if payload:
                await self.send_data(payload)
            await self.send(TCP_EOF)

        sending = asyncio.create_task(send())
        try:
            return await self.data_until_eof()
        finally:
            async with asyncio.timeout(IO_TIMEOUT_S):
                await sending

    async def closed_by_lt(self) -> bool:
        """Whether lt closes the connection (reading and dropping anything before)."""
        with contextlib.suppress(ConnectionError):
            async with asyncio.timeout(IO_TIMEOUT_S):
                while await self.reader.read(READ_BYTES):
                    pass
        return True


@contextlib.asynccontextmanager
async def pool_connection() -> AsyncIterator[
    tuple[RelayEnd, asyncio.StreamReader, asyncio.StreamWriter]
]:
    """A real loopback connection: the relay's end, and lt's reader and writer."""
    accepted: asyncio.Future[tuple[asyncio.StreamReader, asyncio.StreamWriter]]
    accepted = asyncio.get_running_loop().create_future()

    async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.set_result((reader, writer))

    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    lt_reader, lt_writer = await asyncio.open_connection("127.0.0.1", port)
    async with asyncio.timeout(IO_TIMEOUT_S):
        relay_reader, relay_writer = await accepted
    server.close()
    try:
        yield RelayEnd(relay_reader, relay_writer), lt_reader, lt_writer
    finally:
        relay_writer.close()
        lt_writer.close()


@dataclass
class App:
    """A local app on a loopback port; what each of its connections received."""

    port: int = 0
    received: list[bytes] = field(default_factory=list)
    connections: int = 0
    sent: int = 0  # bytes the flooding app got into its socket
    ended: list[str] = field(default_factory=list)  # how each connection ended for the app


@contextlib.asynccontextmanager
async def local_app(kind: str) -> AsyncIterator[App]:
    """`echo`: bytes back as they come, EOF after the visitor's. `after_eof`: reads to the
    visitor's EOF, then answers the sha256 of it all. `greets_first`: sends a greeting and
    its EOF at once, then reads to the visitor's EOF. `flood`: writes for ever. `reset`:
    accepts and resets the connection."""
    app = App()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        app.connections += 1
        received = bytearray()
        try:
            if kind == "reset":
                sock = writer.get_extra_info("socket")
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                writer.transport.abort()
                return
            if kind == "greets_first":
                writer.write(b"hello from the app\n")
                writer.write_eof()
            if kind == "flood":
                chunk = b"x" * READ_BYTES
                while True:
                    writer.write(chunk)
                    await writer.drain()
                    app.sent += len(chunk)
            while data := await reader.read(READ_BYTES):
                received += data
                if kind == "echo":
                    writer.write(data)
                    await writer.drain()
            app.ended.append("eof")
            if kind == "after_eof":
                writer.write(hashlib.sha256(received).hexdigest().encode())
            if kind != "greets_first":
                writer.write_eof()
                await writer.drain()
        except ConnectionError:
            app.ended.append("reset")
        finally:
            app.received.append(bytes(received))
            if kind == "flood":
                writer.transport.abort()  # its unsent bytes would hold the socket open
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    listener = Listener(serve)  # every connection closed at the end (listener.py)
    listener.start()
    app.port = listener.port
    try:
        yield app
    finally:
        await listener.stop()


class Recorder:
    """The tunnel's side of TcpObserver: what lt would count and print."""

    def __init__(self) -> None:
        self.logs: list[TcpConnectionLog] = []
        self.open = 0
        self.unreachable: list[str] = []
        self.bytes_in = 0
        self.bytes_out = 0

    def connection_started(self) -> None:
        self.open += 1

    def connection_done(self, log: TcpConnectionLog) -> None:
        self.open -= 1
        self.logs.append(log)

    def local_unreachable(self, reason: str) -> None:
        self.unreachable.append(reason)

    def local_reachable(self) -> None:
        pass

    def count_bytes(self, received: int, sent: int) -> None:
        self.bytes_in += received
        self.bytes_out += sent


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then closed)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def run(test: Callable[[], Awaitable[None]]) -> None:
    """Run `test` with a deadline, then end what it left running and let the transports
    finish closing before the loop does (no socket is left for the garbage collector)."""

    async def bounded() -> None:
        async with asyncio.timeout(IO_TIMEOUT_S * 3):
            try:
                await test()
            finally:
                others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
                for task in others:
                    task.cancel()
                await asyncio.gather(*others, return_exceptions=True)
                # A closing transport's last callbacks: one loop turn each.
                await asyncio.sleep(0)
                await asyncio.sleep(0)
                await asyncio.sleep(0)

    asyncio.run(bounded())
