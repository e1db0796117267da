"""Pool sockets, fed exact bytes over real loopback connections.

The relay side is a real `PoolSocket` behind a real listener; the "tunnel client" is
a raw socket in the test, so every byte it answers with is visible here.
"""

from __future__ import annotations

import asyncio

import h11
import pytest
from harness.pool_listener import connect, pool_listener
from harness.waiting import wait_until_async

from relay.pool.errors import PoolError
from relay.pool.socket import PoolSocket
from relay.pool.tunnel import NoSocket, Tunnel
from relay.proxy.exchange import read_response_head

GET = h11.Request(method="GET", target="/", headers=[(b"host", b"test-tunnel.localhost")])
HEAD = h11.Request(method="HEAD", target="/", headers=[(b"host", b"test-tunnel.localhost")])


async def _one_socket(tunnel: Tunnel):
    reader, writer = await connect(tunnel)
    await wait_until_async(lambda: tunnel.connected_sockets == 1)
    conn = await tunnel.acquire(1.0, 10)
    return reader, writer, conn


async def _read_response(conn: PoolSocket) -> tuple[h11.Response, bytes]:
    response = await conn.next_event(2.0)
    assert isinstance(response, h11.Response)
    body = b""
    while True:
        event = await conn.next_event(2.0)
        if isinstance(event, h11.EndOfMessage):
            return response, body
        body += event.data


def test_a_clean_response_is_read_and_the_socket_is_reused() -> None:
    async def scenario() -> None:
        async with pool_listener() as tunnel:
            reader, writer, conn = await _one_socket(tunnel)
            for n in range(3):
                conn.send(GET)
                conn.send(h11.EndOfMessage())
                head = await reader.readuntil(b"\r\n\r\n")
                assert head.startswith(b"GET / HTTP/1.1\r\n")
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello")
                response, body = await _read_response(conn)
                assert (response.status_code, body) == (200, b"hello")
                assert conn.finish_exchange(False), f"socket not reusable after exchange {n}"
                tunnel.release(conn)
                conn = await tunnel.acquire(1.0, 10)
            writer.close()

    asyncio.run(scenario())


def test_garbage_instead_of_a_response_is_a_protocol_error() -> None:
    async def scenario() -> None:
        async with pool_listener() as tunnel:
            reader, writer, conn = await _one_socket(tunnel)
            conn.send(GET)
            conn.send(h11.EndOfMessage())
            writer.write(b"\x00\x01garbage that is not http\r\n\r\n")
            with pytest.raises(h11.RemoteProtocolError):
                await conn.next_event(2.0)
            writer.close()

    asyncio.run(scenario())


def test_bytes_after_the_end_of_a_response_make_the_socket_unusable() -> None:
    async def scenario() -> None:
        async with pool_listener() as tunnel:
            reader, writer, conn = await _one_socket(tunnel)
            conn.send(GET)
            conn.send(h11.EndOfMessage())
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 200 OK\r\n")
            response, body = await _read_response(conn)
            assert body == b"ok"
            assert not conn.finish_exchange(False)
            writer.close()

    asyncio.run(scenario())


def test_bytes_on_an_idle_socket_close_it() -> None:
    async def scenario() -> None:
        async with pool_listener() as tunnel:
            reader, writer = await connect(tunnel)
            await wait_until_async(lambda: tunnel.connected_sockets == 1)
            writer.write(b"HTTP/1.1 200 OK\r\n\r\n")  # nobody asked
            await wait_until_async(lambda: tunnel.connected_sockets == 0)
            assert await asyncio.wait_for(reader.read(), 2.0) == b""
            writer.close()

    asyncio.run(scenario())


def test_a_response_to_head_has_no_body_even_with_a_content_length() -> None:
    async def scenario() -> None:
        async with pool_listener() as tunnel:
            reader, writer, conn = await _one_socket(tunnel)
            conn.send(HEAD)
            conn.send(h11.EndOfMessage())
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n")
            response, body = await _read_response(conn)
            assert body == b""
            # A raw pipe (no client id, like the npm client) is never reused after HEAD:
            # an app that writes a body anyway often writes it a little later.
            assert not conn.finish_exchange(False)
            writer.close()

    asyncio.run(scenario())


def test_a_client_that_closes_mid_body_is_an_error_not_a_short_response() -> None:
    async def scenario() -> None:
        async with pool_listener() as tunnel:
            reader, writer, conn = await _one_socket(tunnel)
            conn.send(GET)
            conn.send(h11.EndOfMessage())
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly some")
            await writer.drain()
            writer.close()
            with pytest.raises((PoolError, h11.RemoteProtocolError)):
                await _read_response(conn)

    asyncio.run(scenario())


def test_a_client_that_never_answers_times_out() -> None:
    async def scenario() -> None:
        async with pool_listener() as tunnel:
            reader, writer, conn = await _one_socket(tunnel)
            conn.send(GET)
            conn.send(h11.EndOfMessage())
            with pytest.raises(TimeoutError):
                await conn.next_event(0.05)
            writer.close()

    asyncio.run(scenario())


def test_sockets_from_another_address_are_refused() -> None:
    async def scenario() -> None:
        async with pool_listener(client_ip="127.0.0.1") as tunnel:
            reader, writer = await connect(tunnel, source="127.0.0.2")
            assert await asyncio.wait_for(reader.read(), 2.0) == b""
            assert tunnel.connected_sockets == 0
            writer.close()
            good_reader, good_writer = await connect(tunnel, source="127.0.0.1")
            await wait_until_async(lambda: tunnel.connected_sockets == 1)
            good_writer.close()

    asyncio.run(scenario())


def test_sockets_beyond_the_advertised_count_are_refused() -> None:
    async def scenario() -> None:
        async with pool_listener(max_conn_count=2) as tunnel:
            kept = [await connect(tunnel) for _ in range(2)]
            await wait_until_async(lambda: tunnel.connected_sockets == 2)
            reader, writer = await connect(tunnel)
            assert await asyncio.wait_for(reader.read(), 2.0) == b""
            assert tunnel.connected_sockets == 2
            writer.close()
            for _, w in kept:
                w.close()

    asyncio.run(scenario())


def test_a_waiter_that_gives_up_does_not_take_a_socket_with_it() -> None:
    """The localtunnel server's lock-up: visitors who leave while waiting eat sockets."""

    async def scenario() -> None:
        async with pool_listener(max_conn_count=1) as tunnel:
            reader, writer, conn = await _one_socket(tunnel)
            waiters = [asyncio.ensure_future(tunnel.acquire(5.0, 10)) for _ in range(5)]
            await wait_until_async(lambda: len(tunnel.waiters) == 5)
            for w in waiters[:4]:
                w.cancel()
            tunnel.release(conn)  # handed to the only waiter still waiting
            got = await asyncio.wait_for(waiters[4], 2.0)
            assert got is conn
            # Cancel a waiter in the same tick its socket was handed over: it must come back.
            late = asyncio.ensure_future(tunnel.acquire(5.0, 10))
            await wait_until_async(lambda: len(tunnel.waiters) == 1)
            tunnel.release(got)
            late.cancel()
            await asyncio.gather(late, return_exceptions=True)
            assert tunnel.idle == [conn]
            again = await tunnel.acquire(0.5, 10)
            assert again is conn
            writer.close()

    asyncio.run(scenario())


def test_no_free_socket_within_the_wait_is_a_504() -> None:
    async def scenario() -> None:
        async with pool_listener(max_conn_count=1) as tunnel:
            reader, writer, conn = await _one_socket(tunnel)
            with pytest.raises(NoSocket) as caught:
                await tunnel.acquire(0.05, 10)
            assert caught.value.status == 504
            assert not tunnel.waiters
            writer.close()

    asyncio.run(scenario())


def test_a_full_waiting_queue_answers_503_at_once() -> None:
    async def scenario() -> None:
        async with pool_listener(max_conn_count=1) as tunnel:
            reader, writer, conn = await _one_socket(tunnel)
            waiting = asyncio.ensure_future(tunnel.acquire(5.0, 1))
            await wait_until_async(lambda: len(tunnel.waiters) == 1)
            with pytest.raises(NoSocket) as caught:
                await tunnel.acquire(5.0, 1)
            assert caught.value.status == 503
            waiting.cancel()
            await asyncio.gather(waiting, return_exceptions=True)
            writer.close()

    asyncio.run(scenario())


def test_a_tunnel_with_no_sockets_answers_503_with_retry_after() -> None:
    async def scenario() -> None:
        async with pool_listener() as tunnel:
            with pytest.raises(NoSocket) as caught:
                await tunnel.acquire(1.0, 10)
            assert caught.value.status == 503
            assert caught.value.retry_after is not None

    asyncio.run(scenario())


def test_losing_every_socket_starts_the_grace_period() -> None:
    async def scenario() -> None:
        async with pool_listener() as tunnel:
            reader, writer = await connect(tunnel)
            await wait_until_async(lambda: tunnel.connected_sockets == 1)
            assert tunnel.offline_since is None
            writer.close()
            await wait_until_async(lambda: tunnel.connected_sockets == 0)
            assert tunnel.offline_since is not None
            assert tunnel.registry.expiries == [tunnel]  # type: ignore[attr-defined]

    asyncio.run(scenario())


def test_a_response_head_larger_than_the_limit_is_refused_even_when_it_arrives_whole() -> None:
    async def scenario() -> None:
        async with pool_listener() as tunnel:
            reader, writer, conn = await _one_socket(tunnel)
            conn.send(GET, h11.EndOfMessage())
            big = b"X-Big: " + b"a" * 40_000 + b"\r\n"
            writer.write(b"HTTP/1.1 200 OK\r\n" + big + b"Content-Length: 0\r\n\r\n")
            await writer.drain()
            with pytest.raises((PoolError, h11.RemoteProtocolError)):
                await read_response_head(conn, 2.0)
            writer.close()

    asyncio.run(scenario())


def test_a_response_head_within_the_limit_is_read() -> None:
    async def scenario() -> None:
        async with pool_listener() as tunnel:
            reader, writer, conn = await _one_socket(tunnel)
            conn.send(GET, h11.EndOfMessage())
            writer.write(
                b"HTTP/1.1 200 OK\r\nX-Ok: " + b"a" * 8000 + b"\r\nContent-Length: 0\r\n\r\n"
            )
            response = await read_response_head(conn, 2.0)
            assert response.status_code == 200
            writer.close()

    asyncio.run(scenario())
