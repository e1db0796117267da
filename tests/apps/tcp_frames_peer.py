"""A TCP tunnel's client for tests: one pool connection speaking frames (relay.protocol, "TCP
tunnels"; the codec is our lt's, client/tunnelsite_client/tcp_frames.py), honest or hostile.

`FramePeer.connect(port)` opens a raw pool connection to a tunnel's pool listener. The test
then reads what the relay sends frame by frame (`next_frame`, `expect_open`) and writes
what it likes: frames (`data`, `eof`, `close`) or any bytes at all (`raw`). `serve(app)` is
the honest client: for each OPEN it dials the app, copies bytes both ways with half-close
and backpressure, and waits for the next OPEN after EOF both ways, as our lt does.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from django.conf import settings
from harness.pool_listener import pool_listener
from harness.waiting import wait_until_async

from relay.pool.tcp_side import TcpSide
from relay.pool.tcp_visitor import TcpVisitor
from relay.pool.tunnel import Tunnel
from tunnelsite_client.limits import TCP_CLOSE, TCP_DATA, TCP_EOF, TCP_OPEN
from tunnelsite_client.tcp_frames import FrameReader, data_frames, frame, reason_payload

IO_TIMEOUT_S = 10.0
READ_BYTES = 64 * 1024


class PeerClosed(Exception):
    """The relay closed the pool connection."""


class FramePeer:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.frames = FrameReader()
        self.parsed: deque[tuple[bytes, bytes]] = deque()
        self.conversations = 0  # served to the end (EOF both ways)
        self.opens: list[str] = []  # each OPEN's payload, in order

    @classmethod
    async def connect(cls, port: int, host: str = "127.0.0.1") -> FramePeer:
        reader, writer = await asyncio.open_connection(host, port)
        return cls(reader, writer)

    # --- reading --------------------------------------------------------------------------
    async def next_frame(self, timeout: float | None = IO_TIMEOUT_S) -> tuple[bytes, bytes]:
        """The next frame (a DATA frame possibly in pieces); PeerClosed at the end."""
        async with asyncio.timeout(timeout):
            while not self.parsed:
                try:
                    data = await self.reader.read(READ_BYTES)
                except ConnectionError as exc:
                    raise PeerClosed(str(exc)) from exc
                if not data:
                    raise PeerClosed("the relay closed the pool connection")
                self.parsed.extend(self.frames.feed(data))
        return self.parsed.popleft()

    async def expect_open(self, timeout: float | None = IO_TIMEOUT_S) -> str:
        kind, payload = await self.next_frame(timeout)
        assert kind == TCP_OPEN, f"expected OPEN, got {kind!r} {payload[:40]!r}"
        self.opens.append(payload.decode("ascii"))
        return self.opens[-1]

    async def read_until_eof(self, limit: int = 1 << 30) -> bytes:
        """The visitor's bytes up to its EOF (AssertionError on CLOSE)."""
        got = bytearray()
        while True:
            kind, payload = await self.next_frame()
            if kind == TCP_EOF:
                return bytes(got)
            assert kind == TCP_DATA, f"expected DATA or EOF, got {kind!r} {payload!r}"
            got += payload
            assert len(got) <= limit

    async def wait_closed(self, timeout: float = IO_TIMEOUT_S) -> list[tuple[bytes, bytes]]:
        """Read until the relay closes the pool connection: the frames it sent before."""
        seen: list[tuple[bytes, bytes]] = []
        with contextlib.suppress(PeerClosed):
            while True:
                seen.append(await self.next_frame(timeout))
        return seen

    # --- writing --------------------------------------------------------------------------
    def raw(self, data: bytes) -> None:
        self.writer.write(data)

    def data(self, data: bytes) -> None:
        self.writer.writelines(data_frames(data))

    def eof(self) -> None:
        self.writer.write(frame(TCP_EOF))

    def close(self, reason: str) -> None:
        self.writer.write(frame(TCP_CLOSE, reason_payload(reason)))

    def hang_up(self) -> None:
        self.writer.transport.abort()

    # --- the honest client ----------------------------------------------------------------
    async def serve(self, app: tuple[str, int]) -> None:
        """Serve conversations until the relay closes the pool connection (or sends CLOSE)."""
        try:
            while True:
                await self.expect_open(None)
                if not await self._conversation(app):
                    return
                self.conversations += 1
        except PeerClosed:
            return
        finally:
            self.writer.transport.abort()

    async def _conversation(self, app: tuple[str, int]) -> bool:
        try:
            app_reader, app_writer = await asyncio.open_connection(*app)
        except OSError as exc:
            self.close(f"the app refused: {exc}")
            return False
        to_app = asyncio.ensure_future(self._to_app(app_writer))
        to_relay = asyncio.ensure_future(self._to_relay(app_reader))
        try:
            kept = await to_app
            if not kept:
                return False
            await to_relay
            return True
        finally:
            to_relay.cancel()
            app_writer.transport.abort()

    async def _to_app(self, app_writer: asyncio.StreamWriter) -> bool:
        while True:
            kind, payload = await self.next_frame(None)
            if kind == TCP_DATA:
                app_writer.write(payload)
                await app_writer.drain()
            elif kind == TCP_EOF:
                app_writer.write_eof()
                return True
            else:  # CLOSE: the visitor reset, or the relay ended it
                return False

    async def _to_relay(self, app_reader: asyncio.StreamReader) -> None:
        while True:
            try:
                data = await app_reader.read(READ_BYTES)
            except ConnectionError:
                self.close("the app reset the connection")
                raise
            if not data:
                self.eof()
                await self.writer.drain()
                return
            self.data(data)
            await self.writer.drain()


# --- the relay's side in this process (tests/tcp_relay): a TCP tunnel and its apps -----------
def tcp_settings(**overrides: Any) -> dict[str, Any]:
    """The registry settings a TCP tunnel reads, at this run's values (the defaults), with
    only what a test tests changed; for harness.pool_listener.pool_listener(**settings)."""
    values = {
        name: getattr(settings, name)
        for name in ("RELAY_TCP_WAIT_S", "RELAY_TCP_MAX_WAITERS", "RELAY_TCP_IDLE_TIMEOUT_S")
    }
    values.update(overrides)
    return values


async def open_tcp_side(tunnel: Tunnel) -> int:
    """Make `tunnel` (from harness.pool_listener) a TCP tunnel of our lt, listening for
    visitors on a loopback port as relay/pool/tcp_ports.py does: that port."""
    loop = asyncio.get_running_loop()
    tunnel.client_id = "lt-test"  # our lt: frames, never the npm client's raw pipe
    server = await loop.create_server(lambda: TcpVisitor(tunnel), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    tunnel.tcp = TcpSide(port, server)
    return port


def reset(writer: asyncio.StreamWriter) -> None:
    """Close with a reset (RST), not a FIN: SO_LINGER of zero, then close."""
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


class TcpRun:
    """A TCP tunnel in this process, with what a test opened against it: pool connections
    (FramePeer), visitors and the honest peers' tasks, all closed when the test ends."""

    def __init__(self, tunnel: Tunnel, port: int) -> None:
        self.tunnel = tunnel
        self.port = port  # the visitors' port
        self.writers: list[asyncio.StreamWriter] = []
        self.tasks: list[asyncio.Task[None]] = []

    async def pooled(self, count: int = 1) -> list[FramePeer]:
        """`count` pool connections, once the tunnel holds them all idle."""
        peers = [await FramePeer.connect(self.tunnel.port) for _ in range(count)]
        self.writers.extend(peer.writer for peer in peers)
        await wait_until_async(lambda: len(self.tunnel.idle) >= count, message=f"{count} idle")
        return peers

    def serve(self, peer: FramePeer, app: tuple[str, int]) -> asyncio.Task[None]:
        task = asyncio.ensure_future(peer.serve(app))
        self.tasks.append(task)
        return task

    async def visit(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        self.writers.append(writer)
        return reader, writer

    def close(self) -> None:
        for task in self.tasks:
            task.cancel()
        for writer in self.writers:
            writer.transport.abort()


@asynccontextmanager
async def tcp_tunnel(max_conn_count: int = 1, **overrides: Any) -> AsyncIterator[TcpRun]:
    """A TCP tunnel of our lt on loopback ports, with the settings' values but `overrides`."""
    async with pool_listener(max_conn_count, **tcp_settings(**overrides)) as tunnel:
        run = TcpRun(tunnel, await open_tcp_side(tunnel))
        try:
            yield run
        finally:
            run.close()
            await asyncio.sleep(0)  # the aborts' callbacks run before the loop closes


@asynccontextmanager
async def echo_app() -> AsyncIterator[tuple[str, int]]:
    """A local app that sends back what it reads, and its FIN after the visitor's."""

    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(READ_BYTES):
                writer.write(data)
                await writer.drain()
            writer.write_eof()
            await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(echo, "127.0.0.1", 0)
    try:
        yield ("127.0.0.1", server.sockets[0].getsockname()[1])
    finally:
        server.close()
