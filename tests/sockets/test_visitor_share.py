"""Each visitor address's share of a tunnel's sockets, on real pool sockets (no mocks).

With 3 sockets and RELAY_SPARE_SOCKETS=1 an address may hold 2. Its requests past that
wait in the same queue as everyone's; a freed socket goes to the first waiter within its
share, and no way of freeing a place (a socket given back, or closed) leaves a waiter that
could now be served asleep while a socket is idle.
"""

from __future__ import annotations

import asyncio

import pytest
from harness.pool_listener import connect, pool_listener
from harness.waiting import wait_until_async

from relay.pool.quota import visitor_key
from relay.pool.tunnel import NoSocket, Tunnel

ALICE, BOB = "192.0.2.1", "192.0.2.2"


async def _three_sockets(tunnel: Tunnel) -> list:
    streams = [await connect(tunnel) for _ in range(3)]
    await wait_until_async(lambda: tunnel.connected_sockets == 3 and len(tunnel.idle) == 3)
    return streams


def _pending(task: asyncio.Task) -> bool:
    return not task.done()


def test_an_address_over_its_share_waits_while_a_socket_is_idle_and_others_take_it() -> None:
    async def scenario() -> None:
        async with pool_listener(3, RELAY_SPARE_SOCKETS=1) as tunnel:
            streams = await _three_sockets(tunnel)
            first = await tunnel.acquire(1.0, 10, ALICE)
            await tunnel.acquire(1.0, 10, ALICE)
            third = asyncio.ensure_future(tunnel.acquire(5.0, 10, ALICE))
            await wait_until_async(lambda: len(tunnel.waiters) == 1)
            assert len(tunnel.idle) == 1 and _pending(third)

            bobs = await tunnel.acquire(1.0, 10, BOB)  # not held back by alice's waiter
            assert tunnel.held == {ALICE: 2, BOB: 1}

            # bob's socket comes back while alice (over her share) waits first in line:
            # it goes past her, to bob's next request.
            bobs_next = asyncio.ensure_future(tunnel.acquire(5.0, 10, BOB))
            await wait_until_async(lambda: len(tunnel.waiters) == 2)
            tunnel.release(bobs)
            assert await asyncio.wait_for(bobs_next, 1) is bobs
            assert _pending(third)

            # One of alice's own sockets comes back: her waiter gets it at once.
            tunnel.release(first)
            assert await asyncio.wait_for(third, 1) is first
            assert tunnel.held == {ALICE: 2, BOB: 1} and not tunnel.waiters
            for _, writer in streams:
                writer.close()

    asyncio.run(scenario())


def test_a_closed_socket_of_an_address_wakes_its_waiter_for_an_idle_one() -> None:
    async def scenario() -> None:
        async with pool_listener(3, RELAY_SPARE_SOCKETS=1) as tunnel:
            streams = await _three_sockets(tunnel)
            first = await tunnel.acquire(1.0, 10, ALICE)
            await tunnel.acquire(1.0, 10, ALICE)
            third = asyncio.ensure_future(tunnel.acquire(5.0, 10, ALICE))
            await wait_until_async(lambda: len(tunnel.waiters) == 1)
            idle = tunnel.idle[0]

            tunnel.discard(first)  # cut mid-response: closed, not given back

            assert await asyncio.wait_for(third, 1) is idle
            assert first.closed and tunnel.held == {ALICE: 2}
            for _, writer in streams:
                writer.close()

    asyncio.run(scenario())


def test_a_waiter_over_its_share_gets_a_504_naming_the_reason() -> None:
    async def scenario() -> None:
        async with pool_listener(3, RELAY_SPARE_SOCKETS=1) as tunnel:
            streams = await _three_sockets(tunnel)
            await tunnel.acquire(1.0, 10, ALICE)
            await tunnel.acquire(1.0, 10, ALICE)
            with pytest.raises(NoSocket) as refused:
                await tunnel.acquire(0.05, 10, ALICE)
            assert refused.value.status == 504
            assert "This address holds too many" in refused.value.message
            assert tunnel.held == {ALICE: 2} and not tunnel.waiters
            for _, writer in streams:
                writer.close()

    asyncio.run(scenario())


def test_a_waiter_that_leaves_after_the_hand_over_gives_its_place_back() -> None:
    async def scenario() -> None:
        async with pool_listener(3, RELAY_SPARE_SOCKETS=1) as tunnel:
            streams = await _three_sockets(tunnel)
            held = [await tunnel.acquire(1.0, 10, BOB) for _ in range(2)]
            alice = await tunnel.acquire(1.0, 10, ALICE)
            waiter = asyncio.ensure_future(tunnel.acquire(5.0, 10, ALICE))
            await wait_until_async(lambda: len(tunnel.waiters) == 1)
            tunnel.release(held[0])  # handed to alice's waiter...
            waiter.cancel()  # ...who left before running
            with pytest.raises(asyncio.CancelledError):
                await waiter
            assert tunnel.held == {ALICE: 1, BOB: 1}
            assert held[0] in tunnel.idle and not held[0].busy
            tunnel.release(alice)
            assert tunnel.held == {BOB: 1}
            for _, writer in streams:
                writer.close()

    asyncio.run(scenario())


def test_a_visitor_is_counted_per_address_and_per_ipv6_network() -> None:
    def key(peer: str) -> str:
        return visitor_key({"type": "http", "client": (peer, 40000), "headers": []})

    assert key("2001:db8:1:2::1") == key("2001:db8:1:2:ffff::9")  # one /64: one visitor
    assert key("2001:db8:1:3::1") != key("2001:db8:1:2::1")
    assert key("::ffff:192.0.2.1") == key("192.0.2.1") != key("192.0.2.2")
