"""Visitors of a TCP tunnel waiting for a pool connection cost the relay no buffer (they are
not read until OPEN), one address holds at most RELAY_MAX_CONNECTIONS_PER_IP of them, and a
pool connection that drops right at its hand-over ends the visitor's task quietly. Real
loopback sockets (tests/apps/tcp_frames_peer.py), the settings' defaults."""

from __future__ import annotations

import asyncio
import tracemalloc

from apps.tcp_frames_peer import tcp_tunnel
from django.conf import settings
from harness.waiting import IO_TIMEOUT_S, wait_until_async

from relay.pool.tcp_visitor import TcpVisitor, open_payload
from relay.protocol import TCP_MAX_OPEN_BYTES
from tunnelsite_client.limits import TCP_DATA

VISITORS = 300  # from one address, past the default RELAY_MAX_CONNECTIONS_PER_IP (256)
EARLY = b"x" * 65536  # what each sends at once, before any pool connection is free


async def _ended(reader: asyncio.StreamReader) -> bool:
    """Whether the relay closed the connection (a reset or a FIN) within the deadline."""
    try:
        async with asyncio.timeout(IO_TIMEOUT_S):
            while await reader.read(65536):
                pass
    except ConnectionResetError:
        pass
    return True


def _visitors(tunnel: object) -> list[TcpVisitor]:
    return list(tunnel.tcp.visitors)  # type: ignore[attr-defined]


def test_waiting_visitors_hold_no_bytes_and_one_address_is_capped() -> None:
    cap = settings.RELAY_MAX_CONNECTIONS_PER_IP
    assert cap < VISITORS

    async def scenario() -> None:
        async with tcp_tunnel() as run:
            (peer,) = await run.pooled()
            _, first = await run.visit()  # holds the only pool connection
            await peer.expect_open()
            tracemalloc.start()
            try:
                before = tracemalloc.get_traced_memory()[0]
                visits = [await run.visit() for _ in range(VISITORS - 1)]
                for _, writer in visits:
                    writer.write(EARLY)
                # (the ones past the cap are reset: their drain may fail)
                await asyncio.gather(*(w.drain() for _, w in visits), return_exceptions=True)
                # Written before this ping: by the time the peer has it, the relay has had
                # every waiter's bytes offered to it.
                first.write(b"ping")
                assert await peer.next_frame() == (TCP_DATA, b"ping")
                await wait_until_async(lambda: len(run.tunnel.waiters) == cap - 1)
                grown = tracemalloc.get_traced_memory()[0] - before
            finally:
                tracemalloc.stop()
            held = sum(len(v.early) for v in _visitors(run.tunnel))
            print(f"{cap - 1} waiters: relay buffers {held} B, traced growth {grown >> 10} KiB")
            assert held == 0
            # 255 × 64 KiB would be 16 MiB; sockets, transports and visitors are a few KiB each
            assert grown < 4 << 20, grown
            assert len(_visitors(run.tunnel)) == cap
            refused = visits[cap - 1 :]  # past the cap: closed at once
            assert all(await asyncio.gather(*(_ended(reader) for reader, _ in refused)))
            assert len(_visitors(run.tunnel)) == cap
            assert run.tunnel.tcp.per_address == {"127.0.0.1": cap}  # type: ignore[union-attr]

    asyncio.run(scenario())


def test_a_pool_connection_dropped_at_its_hand_over_ends_the_visitor_quietly() -> None:
    async def scenario() -> None:
        async with tcp_tunnel() as run:
            await run.pooled()
            conn = await run.tunnel.acquire(IO_TIMEOUT_S, 10, "the test")  # holds the only one
            reader, _ = await run.visit()
            await wait_until_async(lambda: len(run.tunnel.waiters) == 1)
            (visitor,) = _visitors(run.tunnel)
            task = visitor.task
            assert task is not None
            run.tunnel.release(conn)  # handed to the waiting visitor ...
            conn.abort()  # ... and gone before its task runs: OPEN cannot be written
            await asyncio.wait_for(asyncio.shield(task), IO_TIMEOUT_S)
            assert task.exception() is None
            assert await _ended(reader)
            await wait_until_async(lambda: not _visitors(run.tunnel))
            assert run.tunnel.tcp.per_address == {}  # type: ignore[union-attr]
            assert not run.tunnel.tcp.tasks  # type: ignore[union-attr]

    asyncio.run(scenario())


def test_the_open_payload_never_exceeds_its_bound() -> None:
    assert open_payload("203.0.113.9", 5432) == b"203.0.113.9 5432"
    assert open_payload("fe80::1%" + "x" * 200, 65535) == b"fe80::1 65535"
    widest = "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"
    assert len(open_payload(widest, 65535)) <= TCP_MAX_OPEN_BYTES
    assert len(open_payload("y" * 200, 1)) <= TCP_MAX_OPEN_BYTES
