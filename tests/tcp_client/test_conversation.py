"""`lt tcp`'s conversations on one pool connection (tunnelsite_client/tcp_conversation.py), the test
playing the relay's end over a real loopback connection, with a real local app."""

from __future__ import annotations

import asyncio
import hashlib
import os

from harness.waiting import wait_until_async

from tunnelsite_client.limits import TCP_CLOSE, TCP_DATA, TCP_EOF, TCP_MAX_DATA_BYTES, TCP_OPEN
from tunnelsite_client.tcp_conversation import TcpConnection

from .peers import Recorder, closed_port, local_app, pool_connection, run

VISITOR = b"203.0.113.5 51234"


def never_idle() -> float | None:
    return None


def serving(connection: TcpConnection, busy: list[bool] | None = None) -> asyncio.Task[str]:
    """The connection served as the pool does: closed when `serve` returns."""
    record = busy if busy is not None else []

    async def serve() -> str:
        try:
            return await connection.serve(never_idle, record.append)
        finally:
            connection.writer.close()

    return asyncio.create_task(serve())


def test_bytes_cross_both_ways_intact_and_the_connection_serves_the_next_visitor() -> None:
    async def test() -> None:
        async with local_app("echo") as app, pool_connection() as (relay, reader, writer):
            observer = Recorder()
            busy: list[bool] = []
            connection = TcpConnection(reader, writer, "127.0.0.1", app.port, observer)
            task = serving(connection, busy)
            for size in (5 * 1024 * 1024 + 7, 1):
                payload = os.urandom(size)
                await relay.send(TCP_OPEN, VISITOR)
                echoed, ended = await relay.exchange(payload)
                assert ended == TCP_EOF
                assert hashlib.sha256(echoed).digest() == hashlib.sha256(payload).digest()
            await wait_until_async(lambda: len(observer.logs) == 2)
            assert not task.done(), "the connection serves on after EOF both ways"
            assert busy == [True, False, True, False]
            assert [log.bytes_in for log in observer.logs] == [5 * 1024 * 1024 + 7, 1]
            assert [log.ending for log in observer.logs] == ["", ""]
            assert observer.bytes_in == observer.bytes_out == 5 * 1024 * 1024 + 8
            assert app.connections == 2
            task.cancel()

    run(test)


def test_the_visitors_eof_reaches_the_app_which_answers_after_it() -> None:
    async def test() -> None:
        async with local_app("after_eof") as app, pool_connection() as (relay, reader, writer):
            connection = TcpConnection(reader, writer, "127.0.0.1", app.port, Recorder())
            task = serving(connection)
            payload = os.urandom(300_000)
            await relay.send(TCP_OPEN, VISITOR)
            answer, ended = await relay.exchange(payload)
            assert ended == TCP_EOF
            assert answer == hashlib.sha256(payload).hexdigest().encode()
            assert app.ended == ["eof"]
            assert not task.done()
            task.cancel()

    run(test)


def test_the_apps_eof_reaches_the_relay_while_the_visitor_goes_on_writing() -> None:
    async def test() -> None:
        async with local_app("greets_first") as app, pool_connection() as (relay, reader, writer):
            observer = Recorder()
            connection = TcpConnection(reader, writer, "127.0.0.1", app.port, observer)
            task = serving(connection)
            await relay.send(TCP_OPEN, VISITOR)
            greeting, ended = await relay.data_until_eof()
            assert (greeting, ended) == (b"hello from the app\n", TCP_EOF)
            await relay.send_data(b"still talking after your EOF")
            await relay.send(TCP_EOF)
            # The client logs the conversation once both EOFs have passed through it, which
            # can be before the app's own task has read the EOF and recorded what it got.
            await wait_until_async(lambda: observer.logs and app.received)
            assert app.received == [b"still talking after your EOF"]
            assert observer.logs[0].ending == ""
            assert not task.done()
            task.cancel()

    run(test)


def test_an_app_that_refuses_gets_a_close_with_the_reason_and_the_connection_ends() -> None:
    async def test() -> None:
        async with pool_connection() as (relay, reader, writer):
            observer = Recorder()
            port = closed_port()
            connection = TcpConnection(reader, writer, "127.0.0.1", port, observer)
            task = serving(connection)
            await relay.send(TCP_OPEN, VISITOR)
            assert await relay.next() == (
                TCP_CLOSE,
                f"connection refused by 127.0.0.1:{port}".encode(),
            )
            assert await relay.closed_by_lt()
            assert "connection refused" in await task
            assert observer.unreachable == [f"connection refused by 127.0.0.1:{port}"]

    run(test)


def test_a_close_from_the_relay_mid_stream_aborts_the_app_connection() -> None:
    async def test() -> None:
        async with local_app("echo") as app, pool_connection() as (relay, reader, writer):
            observer = Recorder()
            connection = TcpConnection(reader, writer, "127.0.0.1", app.port, observer)
            task = serving(connection)
            await relay.send(TCP_OPEN, VISITOR)
            await relay.send_data(b"ping")
            assert await relay.next() == (TCP_DATA, b"ping")
            await relay.send(TCP_CLOSE, b"the visitor reset")
            assert "the visitor reset" in await task
            await wait_until_async(lambda: app.received)
            assert app.received == [b"ping"]
            assert observer.logs[0].ending.endswith("the visitor reset")

    run(test)


def test_an_app_that_resets_is_a_close_frame_for_the_relay() -> None:
    async def test() -> None:
        async with local_app("reset") as app, pool_connection() as (relay, reader, writer):
            connection = TcpConnection(reader, writer, "127.0.0.1", app.port, Recorder())
            task = serving(connection)
            await relay.send(TCP_OPEN, VISITOR)
            got = await relay.next()
            assert got is not None and got[0] == TCP_CLOSE, got
            assert b"reset" in got[1]
            assert await relay.closed_by_lt()
            await task

    run(test)


HOSTILE = {
    "data before open": b"D\x00\x00\x00\x03abc",
    "an unknown kind": b"Z\x00\x00\x00\x00",
    "an oversized data frame": b"D" + (TCP_MAX_DATA_BYTES + 1).to_bytes(4, "big"),
    "an empty data frame": b"O\x00\x00\x00\x05a b 1D\x00\x00\x00\x00",
    "an open mid-conversation": b"O\x00\x00\x00\x03a 1O\x00\x00\x00\x03a 1",
    "data after the relay's eof": b"O\x00\x00\x00\x03a 1E\x00\x00\x00\x00D\x00\x00\x00\x01x",
    "an eof before open": b"E\x00\x00\x00\x00",
}


def test_a_relay_that_breaks_the_framing_gets_the_pool_connection_closed() -> None:
    async def test() -> None:
        async with local_app("after_eof") as app:
            for name, garbage in HOSTILE.items():
                async with pool_connection() as (relay, reader, writer):
                    connection = TcpConnection(reader, writer, "127.0.0.1", app.port, Recorder())
                    task = serving(connection)
                    await relay.send_raw(garbage)
                    assert await relay.closed_by_lt(), name
                    why = await task
                    assert why, name

    run(test)


def test_a_relay_that_stops_reading_stops_lt_reading_the_app() -> None:
    async def test() -> None:
        async with local_app("flood") as app, pool_connection() as (relay, reader, writer):
            connection = TcpConnection(reader, writer, "127.0.0.1", app.port, Recorder())
            task = serving(connection)
            await relay.send(TCP_OPEN, VISITOR)
            # The relay reads nothing: the kernel's buffers fill, then lt's write buffer
            # passes its high-water mark (64 KiB) and lt must stop reading the app.
            transport = writer.transport
            await wait_until_async(lambda: transport.get_write_buffer_size() >= 64 * 1024)
            stalled_at = app.sent
            await asyncio.sleep(0.5)  # time for an lt that still read the app to show it
            buffered = transport.get_write_buffer_size()
            assert buffered <= 2 * 64 * 1024 + 16, f"lt holds {buffered} bytes for the relay"
            # What the app got out since: only what the kernel's buffers toward lt take.
            assert app.sent - stalled_at < 16 * 1024 * 1024, "lt went on reading the app"
            # Reading again: the bytes flow on.
            before = app.sent
            reading = asyncio.create_task(relay.closed_by_lt())
            await wait_until_async(lambda: app.sent > before + 16 * 1024 * 1024)
            reading.cancel()
            task.cancel()

    run(test)
