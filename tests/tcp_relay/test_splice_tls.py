"""A TCP tunnel's visitor carried over an upgraded, encrypted pool connection: the relay's
`UpgradedPool` (the Twisted protocol our lt's pool connections get after their 101) under
Twisted's real TLS with the relay's own TLS context, its bytes moved to a TLS client speaking
frames by Twisted's in-memory pump (no reactor: the test's loop drives the pump), the visitor
a real loopback connection to `TcpVisitor`. The frames, the reuse and the half-close are
those of a raw pool connection; this checks that nothing of them depends on the raw one."""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections import deque
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import trustme
from apps.tcp_frames_peer import open_tcp_side, tcp_settings
from harness.pool_listener import pool_listener
from harness.waiting import IO_TIMEOUT_S, wait_until_async
from twisted.internet import ssl
from twisted.internet.address import IPv4Address
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import Clock
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.test.iosim import FakeTransport, connect

from relay.pool.tunnel import Tunnel
from relay.pool.upgraded import UpgradedPool
from relay.run.tls import ReloadableTLS
from tunnelsite_client.limits import TCP_DATA, TCP_EOF, TCP_OPEN
from tunnelsite_client.tcp_frames import FrameReader, data_frames, frame

MIB = 1024 * 1024
PUMP_EVERY_S = 0.001  # how often the test's loop moves the in-memory TLS bytes


class FramesOverTls(Protocol):
    """Our lt's end of the encrypted pool connection: frames in, frames out."""

    def __init__(self) -> None:
        self.reader = FrameReader()
        self.frames: deque[tuple[bytes, bytes]] = deque()
        self.lost = False

    def dataReceived(self, data: bytes) -> None:  # noqa: N802 (Twisted's name)
        self.frames.extend(self.reader.feed(data))

    def connectionLost(self, reason: Any = None) -> None:  # noqa: N802
        self.lost = True

    def send(self, data: bytes) -> None:
        self.transport.write(data)  # type: ignore[union-attr]

    def until_eof(self) -> bytes:
        got = bytearray()
        while self.frames:
            kind, payload = self.frames.popleft()
            if kind == TCP_EOF:
                return bytes(got)
            assert kind == TCP_DATA, (kind, payload[:40])
            got += payload
        raise AssertionError("no EOF yet")


class _Upgraded(Factory):
    def __init__(self, tunnel: Tunnel) -> None:
        self.tunnel = tunnel

    def buildProtocol(self, addr: Any) -> UpgradedPool:  # noqa: N802
        return UpgradedPool(self.tunnel, 16384)


def _drive(pump: Any) -> Callable[[], None]:
    """Move the TLS bytes every PUMP_EVERY_S on the running loop, until the returned stop."""
    loop = asyncio.get_running_loop()
    running = True

    def turn() -> None:
        if running:
            while pump.pump(advanceClock=True):
                pass
            loop.call_later(PUMP_EVERY_S, turn)

    def stop() -> None:
        nonlocal running
        running = False

    loop.call_soon(turn)
    return stop


@asynccontextmanager
async def encrypted_pool(tmp_path: Path) -> AsyncIterator[tuple[Tunnel, int, FramesOverTls]]:
    ca = trustme.CA()
    leaf = ca.issue_cert("relay.example")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    leaf.cert_chain_pems[0].write_to_path(str(cert))
    leaf.private_key_pem.write_to_path(str(key))
    clock = Clock()
    async with pool_listener(**tcp_settings()) as tunnel:
        port = await open_tcp_side(tunnel)
        server = TLSMemoryBIOFactory(
            ReloadableTLS(str(cert), str(key)), False, _Upgraded(tunnel), clock
        ).buildProtocol(None)
        lt = FramesOverTls()
        client = TLSMemoryBIOFactory(
            ssl.CertificateOptions(), True, Factory.forProtocol(lambda: lt), clock
        ).buildProtocol(None)
        peer = IPv4Address("TCP", "127.0.0.1", 40000)
        pump = connect(
            server,
            FakeTransport(server, True, peerAddress=peer),
            client,
            FakeTransport(client, False),
            clock=clock,
        )
        stop = _drive(pump)
        try:
            await wait_until_async(lambda: len(tunnel.idle) == 1, message="attached")
            yield tunnel, port, lt
        finally:
            stop()


def test_bytes_both_ways_and_reuse_over_an_encrypted_pool_connection(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with encrypted_pool(tmp_path) as (tunnel, port, lt):
            for round_ in range(3):  # one pool connection, three visitors in a row
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
                sent = os.urandom(2 * MIB)
                writer.write(sent)
                writer.write_eof()  # then it reads the reply
                await wait_until_async(lambda: lt.frames and lt.frames[0][0] == TCP_OPEN)
                lt.frames.popleft()
                await wait_until_async(lambda: any(k == TCP_EOF for k, _ in lt.frames))
                got = lt.until_eof()
                assert hashlib.sha256(got).digest() == hashlib.sha256(sent).digest(), round_
                reply = os.urandom(2 * MIB)
                lt.send(b"".join(data_frames(reply)) + frame(TCP_EOF))
                async with asyncio.timeout(IO_TIMEOUT_S):
                    echoed = await reader.read(-1)
                assert hashlib.sha256(echoed).digest() == hashlib.sha256(reply).digest()
                await wait_until_async(lambda: len(tunnel.idle) == 1, message="reused")
                writer.close()
            assert tunnel.requests == 3 and len(tunnel.connections) == 1 and not lt.lost

    asyncio.run(scenario())
