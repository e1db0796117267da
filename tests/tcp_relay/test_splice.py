"""A TCP tunnel's visitor connections carried over pool connections: the relay's `TcpVisitor`
on a real loopback port, pool connections from a frame-speaking peer on a real pool listener
(tests/apps/tcp_frames_peer.py), bytes checked at both ends."""

from __future__ import annotations

import asyncio
import hashlib
import os
import socket

import pytest
from apps.tcp_frames_peer import echo_app, reset, tcp_tunnel
from harness.waiting import IO_TIMEOUT_S, wait_until_async

from tunnelsite_client.limits import TCP_CLOSE

MIB = 1024 * 1024


async def _ended(reader: asyncio.StreamReader) -> str:
    """How the relay ended the visitor's connection: "eof" (a FIN) or "reset"."""
    try:
        async with asyncio.timeout(IO_TIMEOUT_S):
            while await reader.read(65536):
                pass
    except ConnectionResetError:
        return "reset"
    return "eof"


def test_lt_is_sent_open_with_the_visitors_address() -> None:
    async def scenario() -> None:
        async with tcp_tunnel() as run:
            tunnel = run.tunnel
            (peer,) = await run.pooled()
            reader, writer = await run.visit()
            opened = await peer.expect_open()
            local = writer.get_extra_info("sockname")
            assert opened == f"127.0.0.1 {local[1]}"
            assert tunnel.requests == 1
            writer.close()

    asyncio.run(scenario())


def test_mebibytes_cross_both_ways_intact() -> None:
    async def scenario() -> None:
        async with tcp_tunnel() as run, echo_app() as app:
            tunnel = run.tunnel
            (peer,) = await run.pooled()
            serving = run.serve(peer, app)
            payload = os.urandom(8 * MIB)
            reader, writer = await run.visit()

            async def send() -> None:
                for start in range(0, len(payload), MIB):
                    writer.write(payload[start : start + MIB])
                    await writer.drain()
                writer.write_eof()

            sending = asyncio.ensure_future(send())
            async with asyncio.timeout(IO_TIMEOUT_S * 3):
                echoed = await reader.read(-1)  # to the app's FIN
            await sending
            assert hashlib.sha256(echoed).hexdigest() == hashlib.sha256(payload).hexdigest()
            assert await _ended(reader) == "eof"
            assert (tunnel.bytes_in, tunnel.bytes_out) == (len(payload), len(payload))
            await wait_until_async(lambda: peer.conversations == 1 and len(tunnel.idle) == 1)
            assert not tunnel.tcp.visitors  # type: ignore[union-attr]
            serving.cancel()

    asyncio.run(scenario())


def test_a_visitor_that_shuts_down_writing_still_reads_the_apps_reply() -> None:
    async def scenario() -> None:
        async with tcp_tunnel() as run:
            tunnel = run.tunnel
            (peer,) = await run.pooled()
            reader, writer = await run.visit()
            writer.write(b"question")
            writer.write_eof()
            await peer.expect_open()
            assert await peer.read_until_eof() == b"question"  # the visitor's FIN as EOF
            peer.data(b"answer after your FIN")
            peer.eof()
            async with asyncio.timeout(IO_TIMEOUT_S):
                assert await reader.read(-1) == b"answer after your FIN"
            await wait_until_async(lambda: len(tunnel.idle) == 1, message="pool socket back")
            writer.close()

    asyncio.run(scenario())


def test_an_app_that_shuts_down_writing_still_reads_the_visitors_reply() -> None:
    async def scenario() -> None:
        async with tcp_tunnel() as run:
            tunnel = run.tunnel
            (peer,) = await run.pooled()
            reader, writer = await run.visit()
            await peer.expect_open()
            peer.data(b"banner")
            peer.eof()  # the app's FIN
            async with asyncio.timeout(IO_TIMEOUT_S):
                assert await reader.read(-1) == b"banner"  # a FIN reached the visitor
            writer.write(b"reply after your FIN")
            writer.write_eof()
            assert await peer.read_until_eof() == b"reply after your FIN"
            assert await _ended(reader) == "eof"
            await wait_until_async(lambda: len(tunnel.idle) == 1, message="pool socket back")

    asyncio.run(scenario())


def test_a_visitor_reset_reaches_lt_as_close_and_the_pool_connection_is_closed() -> None:
    async def scenario() -> None:
        async with tcp_tunnel() as run:
            tunnel = run.tunnel
            (peer,) = await run.pooled()
            reader, writer = await run.visit()
            writer.write(b"partial")
            await peer.expect_open()
            reset(writer)
            seen = await peer.wait_closed()
            assert seen[-1][0] == TCP_CLOSE
            assert b"reset" in seen[-1][1]
            await wait_until_async(lambda: not tunnel.connections and not tunnel.tcp.visitors)  # type: ignore[union-attr]

    asyncio.run(scenario())


def test_close_from_lt_resets_the_visitor() -> None:
    async def scenario() -> None:
        async with tcp_tunnel() as run:
            tunnel = run.tunnel
            (peer,) = await run.pooled()
            reader, writer = await run.visit()
            await peer.expect_open()
            peer.data(b"some")
            peer.close("the app reset the connection")
            assert await _ended(reader) == "reset"
            assert await peer.wait_closed() == []
            await wait_until_async(lambda: not tunnel.connections and not tunnel.tcp.visitors)  # type: ignore[union-attr]

    asyncio.run(scenario())


def test_one_pool_connection_serves_fifty_visitors_in_a_row() -> None:
    async def scenario() -> None:
        async with tcp_tunnel() as run, echo_app() as app:
            tunnel = run.tunnel
            (peer,) = await run.pooled()
            serving = run.serve(peer, app)
            for n in range(50):
                reader, writer = await run.visit()
                writer.write(b"visitor %d" % n)
                writer.write_eof()
                async with asyncio.timeout(IO_TIMEOUT_S):
                    assert await reader.read(-1) == b"visitor %d" % n
                writer.close()
            await wait_until_async(lambda: peer.conversations == 50)
            assert len(tunnel.connections) == 1 and tunnel.requests == 50
            assert not serving.done()
            serving.cancel()

    asyncio.run(scenario())


def test_two_hundred_concurrent_visitors_over_ten_pool_connections_are_all_served() -> None:
    async def scenario() -> None:
        async with tcp_tunnel(10) as run, echo_app() as app:
            tunnel = run.tunnel
            peers = await run.pooled(10)
            serving = [run.serve(peer, app) for peer in peers]

            async def one(n: int) -> bytes:
                reader, writer = await run.visit()
                message = b"%d:" % n + os.urandom(32 * 1024)
                writer.write(message)
                writer.write_eof()
                try:
                    got = await reader.read(-1)
                finally:
                    writer.close()
                assert got == message, f"visitor {n} got {len(got)} of {len(message)} bytes"
                return got

            async with asyncio.timeout(IO_TIMEOUT_S * 3):
                answers = await asyncio.gather(*(one(n) for n in range(200)))
            assert len(answers) == 200
            assert sum(peer.conversations for peer in peers) == 200
            assert len(tunnel.connections) == 10 and tunnel.requests == 200
            for task in serving:
                task.cancel()

    asyncio.run(scenario())


def test_a_client_that_dies_mid_stream_resets_the_visitor() -> None:
    async def scenario() -> None:
        async with tcp_tunnel() as run:
            tunnel = run.tunnel
            (peer,) = await run.pooled()
            reader, writer = await run.visit()
            await peer.expect_open()
            peer.data(os.urandom(MIB))
            writer.write(os.urandom(MIB))
            peer.hang_up()  # lt's process died: its pool connection is gone
            assert await _ended(reader) == "reset"
            await wait_until_async(lambda: not tunnel.connections and not tunnel.tcp.visitors)  # type: ignore[union-attr]
            assert tunnel.tcp is not None and tunnel.tcp.server is not None  # the port stays

    asyncio.run(scenario())


def test_a_visitor_that_stops_reading_is_reset_after_the_idle_timeout() -> None:
    async def scenario() -> None:
        async with tcp_tunnel(RELAY_TCP_IDLE_TIMEOUT_S=0.5) as run:
            tunnel = run.tunnel
            (peer,) = await run.pooled()
            visitor = socket.create_connection(("127.0.0.1", run.port))
            visitor.setblocking(False)
            try:
                visitor.shutdown(socket.SHUT_WR)  # a question ends, and it never reads
                await peer.expect_open()
                assert await peer.read_until_eof() == b""
                peer.data(os.urandom(16 * MIB))  # more than the kernel's buffers hold
                peer.eof()
                seen = await peer.wait_closed()
                assert seen[-1] == (TCP_CLOSE, b"idle timeout")
                await wait_until_async(lambda: tunnel.tcp is not None and tunnel.tcp.live == 0)
                assert not tunnel.connections
                with pytest.raises(ConnectionResetError):
                    while visitor.recv(MIB):
                        pass
            finally:
                visitor.close()

    asyncio.run(scenario())
