"""How `lt tcp`'s conversations end when the app goes away or stops reading
(tunnelsite_client/tcp_conversation.py): after lt's EOF it sends nothing more for the conversation,
and
an app that takes no bytes does not hold the pool connection past the relay's idle timeout.
Real loopback sockets: the test playing the relay's end, or the relay's own TcpVisitor in
this process (tests/apps/tcp_frames_peer.py)."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable

from apps.tcp_frames_peer import reset, tcp_tunnel
from harness.waiting import IO_TIMEOUT_S, wait_until_async

from tunnelsite_client.limits import TCP_CLOSE_SEND_S, TCP_EOF, TCP_OPEN
from tunnelsite_client.tcp_conversation import TcpConnection

from .peers import Recorder, pool_connection, run
from .test_conversation import VISITOR, serving

App = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


def replies_then_resets(reset_done: asyncio.Event) -> App:
    """The first connection answers "ok" with its FIN, reads the visitor's first bytes, then
    resets (a server that closes with unread input); the others echo to the visitor's EOF."""
    seen = 0

    async def app(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal seen
        seen += 1
        if seen == 1:
            writer.write(b"ok")
            writer.write_eof()
            await reader.readexactly(5)
            reset(writer)
            reset_done.set()
            return
        data = await reader.read(-1)
        writer.write(data)
        writer.write_eof()
        await writer.drain()
        writer.close()

    return app


def test_an_app_that_resets_after_its_eof_gets_no_close_and_the_next_open_is_served() -> None:
    async def test() -> None:
        reset_done = asyncio.Event()
        server = await asyncio.start_server(replies_then_resets(reset_done), "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        async with pool_connection() as (relay, reader, writer):
            observer = Recorder()
            connection = TcpConnection(reader, writer, "127.0.0.1", port, observer)
            task = serving(connection)
            await relay.send(TCP_OPEN, VISITOR)
            await relay.send_data(b"data1")
            assert await relay.data_until_eof() == (b"ok", TCP_EOF)
            async with asyncio.timeout(IO_TIMEOUT_S):
                await reset_done.wait()
            # The visitor goes on writing after lt's EOF: lt's writes to the app fail.
            for _ in range(4):
                await relay.send_data(os.urandom(100_000))
            await relay.send(TCP_EOF)
            # The relay has EOF both ways: the connection is the next visitor's.
            await relay.send(TCP_OPEN, VISITOR)
            assert await relay.exchange(b"hello B") == (b"hello B", TCP_EOF)
            await wait_until_async(lambda: len(observer.logs) == 2)
            assert [log.ending for log in observer.logs] == ["", ""]
            assert not task.done()
            task.cancel()
        server.close()

    run(test)


def test_a_second_visitor_waiting_on_the_relay_is_served_after_an_app_reset_past_its_eof() -> None:
    async def test() -> None:
        reset_done = asyncio.Event()
        server = await asyncio.start_server(replies_then_resets(reset_done), "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        async with tcp_tunnel(1) as tunnel_run:
            tunnel = tunnel_run.tunnel
            reader, writer = await asyncio.open_connection("127.0.0.1", tunnel.port)
            tunnel_run.writers.append(writer)
            observer = Recorder()
            task = serving(TcpConnection(reader, writer, "127.0.0.1", port, observer))
            await wait_until_async(lambda: len(tunnel.idle) == 1)
            a_reader, a_writer = await tunnel_run.visit()
            a_writer.write(b"data1")
            async with asyncio.timeout(IO_TIMEOUT_S):
                assert await a_reader.read(-1) == b"ok"
            b_reader, b_writer = await tunnel_run.visit()  # waits: the one connection is A's
            async with asyncio.timeout(IO_TIMEOUT_S):
                await reset_done.wait()
            a_writer.write(b"data2" * 100_000)
            a_writer.write_eof()
            b_writer.write(b"hello B")
            b_writer.write_eof()
            async with asyncio.timeout(IO_TIMEOUT_S):
                assert await b_reader.read(-1) == b"hello B"
            await wait_until_async(lambda: len(observer.logs) == 2)
            assert [log.ending for log in observer.logs] == ["", ""]
            task.cancel()
        server.close()

    run(test)


def test_an_app_that_stops_reading_ends_when_the_relays_idle_timeout_resets_the_pool() -> None:
    async def test() -> None:
        hold = asyncio.Event()
        app_saw: list[str] = []

        async def app(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await hold.wait()  # takes no bytes until lt has given up
            try:
                while await reader.read(1 << 20):
                    pass
                app_saw.append("eof")
            except ConnectionResetError:
                app_saw.append("reset")
            finally:
                writer.close()  # (a FIN, had the test failed, must not leave it open)

        server = await asyncio.start_server(app, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        # The relay's idle timeout is what ends it: 0.5 s, not an hour.
        async with tcp_tunnel(1, RELAY_TCP_IDLE_TIMEOUT_S=0.5) as tunnel_run:
            tunnel = tunnel_run.tunnel
            reader, writer = await asyncio.open_connection("127.0.0.1", tunnel.port)
            tunnel_run.writers.append(writer)
            observer = Recorder()
            task = serving(TcpConnection(reader, writer, "127.0.0.1", port, observer))
            await wait_until_async(lambda: len(tunnel.idle) == 1)
            _, visitor = await tunnel_run.visit()
            visitor.write(os.urandom(64 * 1024 * 1024))
            why = await asyncio.wait_for(task, IO_TIMEOUT_S)
            assert "pool connection" in why, why
            assert len(observer.logs) == 1 and observer.logs[0].ending == why
            hold.set()
            await wait_until_async(lambda: app_saw)
            assert app_saw == ["reset"]
        server.close()

    run(test)


def test_a_close_to_a_relay_that_stopped_reading_gives_up_after_its_deadline() -> None:
    async def test() -> None:
        reset_now = asyncio.Event()
        reset_done = asyncio.Event()

        async def app(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            chunk = b"x" * (1 << 20)
            while not reset_now.is_set():  # until the test has seen lt's buffer full
                writer.write(chunk)
                await asyncio.wait(
                    {
                        asyncio.ensure_future(writer.drain()),
                        asyncio.ensure_future(reset_now.wait()),
                    },
                    return_when=asyncio.FIRST_COMPLETED,
                )
            reset(writer)
            reset_done.set()

        server = await asyncio.start_server(app, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        async with pool_connection() as (relay, reader, writer):
            task = serving(TcpConnection(reader, writer, "127.0.0.1", port, Recorder()))
            await relay.send(TCP_OPEN, VISITOR)
            # The relay reads nothing: lt's write buffer toward it fills past its high-water mark.
            await wait_until_async(lambda: writer.transport.get_write_buffer_size() >= 64 * 1024)
            reset_now.set()
            async with asyncio.timeout(IO_TIMEOUT_S):
                await reset_done.wait()
            # Bytes for the app, whose connection is gone: lt must send CLOSE, which cannot leave.
            await relay.send_data(b"for the app")
            why = await asyncio.wait_for(task, TCP_CLOSE_SEND_S + IO_TIMEOUT_S)
            assert why.startswith("the app's connection failed"), why
        server.close()

    run(test)
