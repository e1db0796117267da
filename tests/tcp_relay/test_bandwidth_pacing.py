"""A plan's bandwidth on a TCP visitor's bytes to lt (relay/pool/tcp_visitor.py with
relay/pool/bandwidth.py): a read is passed on a slice at a time, at the rate, not in a burst
per read; the bytes a visitor sent before its pool connection was ready (behind a balancer)
are paced and counted once; a closed tunnel's visitor stops waiting within a step. Real
loopback sockets, the test's process being lt (a frame peer) and the visitor."""

from __future__ import annotations

import asyncio
import ipaddress
import time
from typing import Any

from apps.tcp_frames_peer import FramePeer, TcpRun, tcp_tunnel
from harness.waiting import IO_TIMEOUT_S, wait_until_async

from relay.pool import bandwidth
from relay.pool.bandwidth import Shaper, slice_for
from relay.protocol import BANDWIDTH_MIN_BYTES_PER_SECOND, BANDWIDTH_STEP_S
from tunnelsite_client.limits import TCP_DATA

LOOPBACK = [ipaddress.ip_network("127.0.0.0/8")]
HEADER = b"PROXY TCP4 203.0.113.7 192.0.2.1 40000 20001\r\n"
STEP_DEADLINE_S = BANDWIDTH_STEP_S + 0.2  # one step, and a loaded machine's timer slack


def pattern(n: int) -> bytes:
    block = bytes(range(251))
    return (block * (n // 251 + 1))[:n]


def limited(run: TcpRun, owner: str, rate: int) -> Shaper:
    """The tunnel under `rate`, its owner's bucket up emptied: every byte now waits."""
    run.tunnel.owner = owner
    shaper = run.tunnel.shaper = bandwidth.owners.join(owner, rate, time.monotonic())
    assert shaper is not None
    shaper.up.take(int(shaper.up.burst), time.monotonic())
    return shaper


async def received(peer: FramePeer, size: int) -> list[tuple[float, bytes]]:
    """The visitor's bytes as lt got them: (when, piece) until `size` bytes."""
    got: list[tuple[float, bytes]] = []
    total = 0
    while total < size:
        kind, payload = await peer.next_frame()
        assert kind == TCP_DATA, kind
        got.append((time.monotonic(), payload))
        total += len(payload)
    return got


def test_a_visitors_read_leaves_at_the_rate_a_slice_at_a_time_and_whole() -> None:
    """256 KiB/s, 512 KiB sent at once (two of the event loop's 256 KiB reads): lt gets at
    most the rate's share of the time plus one slice at any moment (before, each read went
    whole and the wait came after it), and every byte, in order."""
    rate = 256 * 1024
    body = pattern(512 * 1024)

    async def scenario() -> None:
        async with tcp_tunnel() as run:
            limited(run, "user:tcp-slices", rate)
            (peer,) = await run.pooled()
            _, writer = await run.visit()
            await peer.expect_open()
            writer.write(body)
            got = await received(peer, len(body))
            assert b"".join(piece for _, piece in got) == body
            first = got[0][0]
            total = 0
            for when, piece in got:
                total += len(piece)
                allowed = rate * (when - first) + slice_for(rate) + rate * TIMER_ALLOWANCE_S
                assert total <= allowed, (total, when - first)
            assert got[-1][0] - first >= 1.5  # 512 KiB at 256 KiB/s, the first slice at once
            run.tunnel.close("test")  # the last slice's wait ends within a step
            await wait_until_async(lambda: run.tunnel.pacing == 0, STEP_DEADLINE_S, "no wait")

    asyncio.run(scenario())


TIMER_ALLOWANCE_S = 0.05  # a timer may fire this early or the clock read this late


def test_bytes_sent_before_the_pool_connection_are_paced_and_counted_once(settings: Any) -> None:
    """Behind a balancer the bytes after the PROXY header, read with it, wait in memory for a
    pool connection (`early`); when they go to lt they are taken from the owner's bucket
    once, and the visitor is then not read until they are paid for. The tunnel closing ends
    that wait within a step."""
    settings.RELAY_TCP_PROXY_PROTOCOL = LOOPBACK  # the one way a visitor's bytes come early
    rate = BANDWIDTH_MIN_BYTES_PER_SECOND
    early = pattern(32 * 1024)  # two seconds of the rate

    async def scenario() -> None:
        async with tcp_tunnel() as run:
            shaper = limited(run, "user:tcp-early", rate)
            emptied = time.monotonic()
            _, writer = await run.visit()
            writer.write(HEADER + early)  # no pool connection yet: read with the header
            await writer.drain()
            await wait_until_async(
                lambda: any(v.early for v in run.tunnel.tcp.visitors),  # type: ignore[union-attr]
                message="the early bytes read",
            )
            peer = await FramePeer.connect(run.tunnel.port)  # taken at once by the visitor
            run.writers.append(peer.writer)
            await peer.expect_open()
            got = await received(peer, len(early))
            assert b"".join(piece for _, piece in got) == early
            owed = -shaper.up.tokens  # the bucket was emptied: what was taken since, less refill
            refill = rate * (time.monotonic() - emptied)
            assert len(early) - refill <= owed <= len(early), (owed, refill)  # once, not twice
            assert run.tunnel.pacing == 1  # the visitor waits for them before it is read on
            closed = time.monotonic()
            run.tunnel.close("test")
            await wait_until_async(
                lambda: run.tunnel.pacing == 0, IO_TIMEOUT_S, "the wait to see the close"
            )
            assert time.monotonic() - closed <= STEP_DEADLINE_S

    asyncio.run(scenario())
