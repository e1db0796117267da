"""A TCP tunnel's visitor connection, admitted or not, waiting, ended by the relay or by a
hostile lt: the relay's `TcpVisitor` on real loopback sockets (tests/apps/tcp_frames_peer.py)."""

from __future__ import annotations

import asyncio
import os
import socket
import time

from apps.tcp_frames_peer import TcpRun, tcp_tunnel
from harness.waiting import IO_TIMEOUT_S, wait_until_async
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from relay.pool.access import Access, VisitorRules
from relay.pool.quota import Quota
from tunnelsite_client.limits import TCP_CLOSE, TCP_DATA, TCP_EOF
from tunnelsite_client.tcp_frames import frame


async def _ended(reader: asyncio.StreamReader, timeout: float = IO_TIMEOUT_S) -> str:
    """How the relay ended the visitor's connection: "eof" (a FIN) or "reset"."""
    try:
        async with asyncio.timeout(timeout):
            while await reader.read(65536):
                pass
    except ConnectionResetError:
        return "reset"
    return "eof"


def _visitors(run: TcpRun) -> int:
    return run.tunnel.tcp.live  # type: ignore[union-attr]


def test_a_visitor_denied_by_cidr_is_closed_at_once_and_lt_hears_nothing() -> None:
    async def scenario() -> None:
        async with tcp_tunnel() as run:
            run.tunnel.access = Access(VisitorRules(cidr_deny=("127.0.0.0/8",)))
            (peer,) = await run.pooled()
            reader, writer = await run.visit()
            writer.write(b"let me in")
            assert await _ended(reader) == "reset"
            assert run.tunnel.requests == 0 and _visitors(run) == 0
            assert len(run.tunnel.idle) == 1  # no pool connection was taken
            allowed = Access(VisitorRules(cidr_allow=(("127.0.0.1/32",),)))
            run.tunnel.access = allowed
            await run.visit()
            await peer.expect_open()  # the same address, now allowed, gets through

    asyncio.run(scenario())


def test_rules_a_tcp_client_cannot_satisfy_refuse_every_visitor() -> None:
    async def scenario() -> None:
        async with tcp_tunnel() as run:
            await run.pooled()
            for rules in (
                VisitorRules(basic_auth=("user:secret",)),
                VisitorRules(team=True),
                VisitorRules(warning=True),
            ):
                run.tunnel.access = Access(rules)
                reader, _ = await run.visit()
                assert await _ended(reader) == "reset", rules
            assert run.tunnel.requests == 0 and len(run.tunnel.idle) == 1

    asyncio.run(scenario())


def test_a_plans_requests_per_minute_count_connections() -> None:
    async def scenario() -> None:
        async with tcp_tunnel() as run:
            run.tunnel.quota = Quota(
                per_minute=1, per_day_bytes=0, max_body_bytes=0, idle_timeout_s=0
            )
            (peer,) = await run.pooled()
            await run.visit()
            await peer.expect_open()
            reader, _ = await run.visit()  # the second this minute
            assert await _ended(reader) == "reset"
            assert run.tunnel.requests == 1

    asyncio.run(scenario())


def test_a_live_connection_is_closed_when_the_days_bytes_run_out() -> None:
    async def scenario() -> None:
        async with tcp_tunnel() as run:
            run.tunnel.quota = Quota(
                per_minute=0, per_day_bytes=100_000, max_body_bytes=0, idle_timeout_s=0
            )
            (peer,) = await run.pooled()
            reader, writer = await run.visit()
            await peer.expect_open()
            writer.write(b"x" * 150_000)
            assert await _ended(reader) == "reset"
            seen = await peer.wait_closed()
            assert seen[-1] == (TCP_CLOSE, b"the tunnel's daily traffic allowance is used up")
            reader, _ = await run.visit()  # and no new one opens today
            assert await _ended(reader) == "reset"

    asyncio.run(scenario())


def test_a_visitor_who_waits_past_the_wait_is_closed() -> None:
    async def scenario() -> None:
        async with tcp_tunnel(RELAY_TCP_WAIT_S=0.3) as run:
            (peer,) = await run.pooled()
            await run.visit()
            await peer.expect_open()  # the only pool connection is busy
            started = time.monotonic()
            reader, writer = await run.visit()
            writer.write(b"hello?")
            assert await _ended(reader) == "reset"
            assert 0.25 <= time.monotonic() - started < IO_TIMEOUT_S
            await wait_until_async(lambda: _visitors(run) == 1 and not run.tunnel.waiters)

    asyncio.run(scenario())


def test_visitors_past_the_most_that_may_wait_are_closed_at_once() -> None:
    async def scenario() -> None:
        async with tcp_tunnel(RELAY_TCP_MAX_WAITERS=1) as run:
            (peer,) = await run.pooled()
            await run.visit()
            await peer.expect_open()
            waiting_reader, _ = await run.visit()
            await wait_until_async(lambda: len(run.tunnel.waiters) == 1)
            started = time.monotonic()
            reader, _ = await run.visit()
            assert await _ended(reader) == "reset"
            assert time.monotonic() - started < 1.0  # not after RELAY_TCP_WAIT_S (10 s)
            assert len(run.tunnel.waiters) == 1  # the first waiter still waits

    asyncio.run(scenario())


def test_a_visitor_who_leaves_while_waiting_is_never_announced_to_lt() -> None:
    """A waiting visitor is not read (the kernel holds its bytes), so its reset is looked
    for when it is handed the pool connection: lt is sent no OPEN for it (its app is not
    dialled for a visitor who is gone), and the connection serves the next visitor."""

    async def scenario() -> None:
        async with tcp_tunnel() as run:
            (peer,) = await run.pooled()
            _, first = await run.visit()
            await peer.expect_open()
            _, leaver = await run.visit()
            await wait_until_async(lambda: len(run.tunnel.waiters) == 1)
            sock = leaver.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\1\0\0\0\0\0\0\0")
            leaver.transport.abort()
            _, third = await run.visit()
            await wait_until_async(lambda: len(run.tunnel.waiters) == 2)
            first.write_eof()
            assert await peer.read_until_eof() == b""
            peer.eof()  # the first conversation ends cleanly: the leaver is handed it
            # The leaver is skipped: the next OPEN on the connection is the third visitor's.
            third_address = third.get_extra_info("sockname")
            assert await peer.expect_open() == f"{third_address[0]} {third_address[1]}"
            await wait_until_async(lambda: _visitors(run) == 1 and not run.tunnel.waiters)

    asyncio.run(scenario())


def test_a_connection_idle_past_the_timeout_is_closed_both_ways() -> None:
    async def scenario() -> None:
        async with tcp_tunnel(RELAY_TCP_IDLE_TIMEOUT_S=0.3) as run:
            (peer,) = await run.pooled()
            reader, writer = await run.visit()
            await peer.expect_open()
            loop = asyncio.get_running_loop()
            for k in (1, 2, 3):  # bytes every 0.2 s keep it alive past the 0.3 s timeout
                loop.call_later(0.2 * k, writer.write, b"ping")
            for _ in range(3):
                assert await peer.next_frame() == (TCP_DATA, b"ping")
            last = time.monotonic()
            assert await _ended(reader) == "reset"
            assert 0.25 <= time.monotonic() - last < 2.0
            assert (await peer.wait_closed())[-1] == (TCP_CLOSE, b"idle timeout")
            await wait_until_async(lambda: _visitors(run) == 0 and not run.tunnel.connections)

    asyncio.run(scenario())


def test_closing_the_tunnel_resets_its_visitors_and_empties_the_set() -> None:
    async def scenario() -> None:
        async with tcp_tunnel(max_conn_count=4) as run:
            peers = await run.pooled(4)
            readers = [(await run.visit())[0] for _ in range(5)]
            # Four carried (every connection), the fifth waiting.
            await wait_until_async(
                lambda: _visitors(run) == 5 and len(run.tunnel.waiters) == 1 and not run.tunnel.idle
            )
            tcp = run.tunnel.tcp
            run.tunnel.close("operator's Disconnect")
            for reader in readers:
                assert await _ended(reader) == "reset"
            assert tcp is not None and not tcp.visitors
            for peer in peers:
                await peer.wait_closed()

    asyncio.run(scenario())


def test_data_after_lts_eof_discards_the_pool_connection_and_resets_the_visitor() -> None:
    async def scenario() -> None:
        async with tcp_tunnel() as run:
            (peer,) = await run.pooled()
            reader, _ = await run.visit()
            await peer.expect_open()
            peer.eof()
            peer.data(b"too late")
            assert await _ended(reader) in ("eof", "reset")  # the EOF's FIN may come first
            await peer.wait_closed()
            await wait_until_async(lambda: not run.tunnel.connections and _visitors(run) == 0)

    asyncio.run(scenario())


def test_bytes_past_the_end_of_a_conversation_are_not_handed_to_the_next_visitor() -> None:
    async def scenario() -> None:
        async with tcp_tunnel() as run:
            (peer,) = await run.pooled()
            reader, writer = await run.visit()
            await peer.expect_open()
            writer.write_eof()
            assert await peer.read_until_eof() == b""
            peer.raw(frame(TCP_EOF) + frame(TCP_DATA, b"for nobody"))
            await peer.wait_closed()
            assert not run.tunnel.connections

    asyncio.run(scenario())


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(junk=st.binary(min_size=1, max_size=2048), more=st.binary(max_size=64))
def test_any_bytes_from_lt_end_with_the_visitor_closed_and_the_connection_discarded(
    junk: bytes, more: bytes
) -> None:
    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        errors: list[object] = []
        loop.set_exception_handler(lambda _loop, context: errors.append(context))
        async with tcp_tunnel() as run:
            (peer,) = await run.pooled()
            reader, writer = await run.visit()
            writer.write(more)
            await peer.expect_open()
            peer.raw(junk)
            peer.hang_up()  # whatever it was, lt is gone after it
            assert await _ended(reader) in ("eof", "reset")
            await wait_until_async(lambda: _visitors(run) == 0 and not run.tunnel.connections)
        assert not errors, errors

    asyncio.run(scenario())


def test_a_hostile_lt_that_stays_connected_after_junk_is_cut_off() -> None:
    async def scenario() -> None:
        async with tcp_tunnel() as run:
            (peer,) = await run.pooled()
            for junk in (b"O\0\0\0\x05hello", b"X\0\0\0\0", b"D\0\0\0\0", b"D\xff\xff\xff\xff"):
                reader, _ = await run.visit()
                await peer.expect_open()
                peer.raw(junk)
                assert await _ended(reader) == "reset", junk
                await peer.wait_closed()
                await wait_until_async(lambda: not run.tunnel.connections)
                (peer,) = await run.pooled()

    asyncio.run(scenario())


def test_a_flood_of_one_byte_frames_from_lt_arrives_whole_without_holding_the_loop() -> None:
    async def scenario() -> None:
        async with tcp_tunnel() as run:
            (peer,) = await run.pooled()
            reader, writer = await run.visit()
            await peer.expect_open()
            count = 200_000
            peer.raw(frame(TCP_DATA, b"x") * count + frame(TCP_EOF))
            loop = asyncio.get_running_loop()
            turns: list[float] = [time.monotonic()]
            reading = True

            def tick() -> None:  # a callback each turn of the loop: how long a turn took
                turns.append(time.monotonic())
                if reading:
                    loop.call_soon(tick)

            loop.call_soon(tick)
            async with asyncio.timeout(IO_TIMEOUT_S):
                got = await reader.read(-1)
            reading = False
            ticks = len(turns)
            longest = max(b - a for a, b in zip(turns, turns[1:], strict=False))
            assert got == b"x" * count
            assert ticks > 10 and longest < 0.25, (ticks, longest)  # measured: 30 ms
            writer.write_eof()
            assert await peer.read_until_eof() == b""
            await wait_until_async(lambda: len(run.tunnel.idle) == 1)

    asyncio.run(scenario())


def test_what_a_waiting_visitor_sent_follows_open_once_a_connection_is_free() -> None:
    async def scenario() -> None:
        async with tcp_tunnel() as run:
            (peer,) = await run.pooled()
            _, first = await run.visit()
            await peer.expect_open()
            reader, writer = await run.visit()
            early = os.urandom(600 * 1024)  # past the waiting buffer: its reading pauses
            writer.write(early)
            writer.write_eof()
            await wait_until_async(lambda: len(run.tunnel.waiters) == 1)
            first.write_eof()
            assert await peer.read_until_eof() == b""
            peer.eof()
            await peer.expect_open()  # the same pool connection, for the waiting visitor
            assert await peer.read_until_eof() == early
            peer.data(b"late but whole")
            peer.eof()
            async with asyncio.timeout(IO_TIMEOUT_S):
                assert await reader.read(-1) == b"late but whole"
            await wait_until_async(lambda: len(run.tunnel.idle) == 1 and _visitors(run) == 0)

    asyncio.run(scenario())


def test_bytes_from_lt_between_conversations_close_its_pool_connection() -> None:
    async def scenario() -> None:
        async with tcp_tunnel() as run:
            (peer,) = await run.pooled()
            peer.data(b"nobody asked")
            assert await peer.wait_closed() == []
            await wait_until_async(lambda: not run.tunnel.connections)

    asyncio.run(scenario())


def test_one_address_may_use_every_connection_of_a_tcp_tunnel() -> None:
    """A database client's pool of connections comes from one address and stays open; `lt
    tcp` keeps two idle pool connections and opens more as visitors arrive. Each visitor of
    the address gets the next connection lt opened (no share kept for other addresses: the
    HTTP rule made the second `psql` wait for a connection lt never opened)."""

    async def scenario() -> None:
        async with tcp_tunnel(max_conn_count=3) as run:
            peers = await run.pooled(3)
            for _ in peers:
                await run.visit()  # the same address, while the others are still carried
            await asyncio.gather(*(peer.expect_open() for peer in peers))
            assert _visitors(run) == 3 and not run.tunnel.idle

    asyncio.run(scenario())
