"""TCP visitors behind a balancer (RELAY_TCP_PROXY_PROTOCOL, HAProxy `send-proxy`): the PROXY
protocol v1 header's source is the visitor's address for lt's OPEN, CIDR rules and the
per-address count; a connection without a usable header is closed and lt hears nothing;
other peers' bytes are never read as a header. Real loopback sockets, the test's process
being the balancer."""

from __future__ import annotations

import asyncio
import ipaddress
from typing import Any

from apps.tcp_frames_peer import TcpRun, tcp_tunnel
from harness.waiting import IO_TIMEOUT_S, wait_until_async

from relay.pool.access import Access, VisitorRules
from tunnelsite_client.limits import TCP_DATA, TCP_EOF

LOOPBACK = [ipaddress.ip_network("127.0.0.0/8")]
HEADER = b"PROXY TCP4 203.0.113.7 192.0.2.1 40000 20001\r\n"


async def _closed(reader: asyncio.StreamReader) -> bool:
    try:
        async with asyncio.timeout(IO_TIMEOUT_S):
            while await reader.read(65536):
                pass
    except ConnectionResetError:
        pass
    return True


def _live(run: TcpRun) -> int:
    return run.tunnel.tcp.live  # type: ignore[union-attr]


def test_the_headers_source_is_the_visitor(settings: Any) -> None:
    settings.RELAY_TCP_PROXY_PROTOCOL = LOOPBACK

    async def scenario() -> None:
        async with tcp_tunnel() as run:
            (peer,) = await run.pooled()
            reader, writer = await run.visit()
            for byte in HEADER:  # a header in pieces reads the same
                writer.write(bytes([byte]))
                await writer.drain()
            writer.write(b"hello")
            writer.write_eof()
            assert await peer.expect_open() == "203.0.113.7 40000"
            assert await peer.read_until_eof() == b"hello"
            assert run.tunnel.tcp.per_address == {"203.0.113.7": 1}  # type: ignore[union-attr]
            peer.data(b"bye")
            peer.eof()
            assert await reader.read() == b"bye"

    asyncio.run(scenario())


def test_cidr_rules_apply_to_the_headers_source(settings: Any) -> None:
    settings.RELAY_TCP_PROXY_PROTOCOL = LOOPBACK

    async def scenario() -> None:
        async with tcp_tunnel() as run:
            run.tunnel.access = Access(VisitorRules(cidr_deny=("203.0.113.0/24",)))
            (peer,) = await run.pooled()
            reader, writer = await run.visit()
            writer.write(HEADER + b"let me in")
            assert await _closed(reader)
            _, writer = await run.visit()
            writer.write(b"PROXY TCP4 198.51.100.4 192.0.2.1 40001 20001\r\n")
            assert await peer.expect_open() == "198.51.100.4 40001"  # not denied: through
            assert run.tunnel.requests == 1

    asyncio.run(scenario())


def test_a_connection_without_a_usable_header_is_closed_and_lt_hears_nothing(
    settings: Any,
) -> None:
    settings.RELAY_TCP_PROXY_PROTOCOL = LOOPBACK

    async def scenario() -> None:
        async with tcp_tunnel() as run:
            (peer,) = await run.pooled()
            for data in (
                b"GET / HTTP/1.1\r\n\r\n",  # no header
                b"PROXY TCP4 203.0.113.7\r\n",  # a malformed one
                b"PROXY UNKNOWN\r\n",  # a health check
                b"PROXY TCP4 " + b"1" * 200,  # no end within 107 bytes
            ):
                reader, writer = await run.visit()
                writer.write(data)
                assert await _closed(reader), data
            reader, writer = await run.visit()
            writer.write(b"PROXY TCP4 203")
            writer.write_eof()  # the connection ends inside its header
            assert await _closed(reader)
            assert run.tunnel.requests == 0 and _live(run) == 0
            assert len(run.tunnel.idle) == 1
            peer.writer.write_eof()
            assert await peer.wait_closed(1.0) == []  # nothing was sent to lt

    asyncio.run(scenario())


def test_a_balancer_that_sends_no_header_in_time_is_closed(settings: Any) -> None:
    settings.RELAY_TCP_PROXY_PROTOCOL = LOOPBACK
    settings.RELAY_HEADER_TIMEOUT_S = 0.2  # what the test is about

    async def scenario() -> None:
        async with tcp_tunnel() as run:
            await run.pooled()
            reader, _ = await run.visit()
            loop = asyncio.get_running_loop()
            started = loop.time()
            assert await _closed(reader)
            assert loop.time() - started < IO_TIMEOUT_S / 2
            assert run.tunnel.requests == 0 and len(run.tunnel.idle) == 1

    asyncio.run(scenario())


def test_other_peers_bytes_are_never_read_as_a_header(settings: Any) -> None:
    settings.RELAY_TCP_PROXY_PROTOCOL = [ipaddress.ip_network("192.0.2.0/24")]

    async def scenario() -> None:
        async with tcp_tunnel() as run:
            (peer,) = await run.pooled()
            _, writer = await run.visit()
            writer.write(HEADER)
            writer.write_eof()
            assert await peer.expect_open() == f"127.0.0.1 {writer.get_extra_info('sockname')[1]}"
            kind, payload = await peer.next_frame()
            assert (kind, payload) == (TCP_DATA, HEADER)  # the visitor's bytes, as sent
            assert await peer.next_frame() == (TCP_EOF, b"")
            await wait_until_async(lambda: run.tunnel.requests == 1)

    asyncio.run(scenario())
