"""A flood of one-byte DATA frames from lt cannot hold the relay's loop (attack finding 2).

Several pool connections (a frame-speaking peer on a real pool listener, real visitors on a
real loopback port) each carry a visitor while their peer writes nothing but 6-byte frames of
one byte each. A callback that reschedules itself with call_soon counts the loop's turns:
the relay must give the loop back at least once per EVENTS_PER_TURN frames it parses. Before
it bounded its parsing, one turn parsed a whole 64 KiB slice per connection (~10,900 frames
each) and a /healthz waited 40 ms and more a turn. Counted, not timed: a busy machine makes
turns slower, never fewer. The bytes still arrive whole and in order."""

from __future__ import annotations

import asyncio
import time

from apps.tcp_frames_peer import FramePeer, tcp_tunnel
from harness.waiting import IO_TIMEOUT_S

from relay.protocol import EVENTS_PER_TURN
from tunnelsite_client.limits import TCP_DATA, TCP_EOF
from tunnelsite_client.tcp_frames import frame

CONNECTIONS = 4
PAYLOAD_BYTES = 96 * 1024  # per connection, each byte its own frame
BURST_FRAMES = 16 * 1024  # frames per write of the flooding peer


class TurnWatch:
    """The loop's turns, measured by a callback that runs once a turn: the longest gap."""

    def __init__(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.longest = 0.0
        self.turns = 0
        self.last = time.perf_counter()
        self.running = True
        self.loop.call_soon(self.tick)

    def tick(self) -> None:
        now = time.perf_counter()
        self.longest = max(self.longest, now - self.last)
        self.turns += 1
        self.last = now
        if self.running:
            self.loop.call_soon(self.tick)


async def flood(peer: FramePeer) -> None:
    """Serve one visitor with PAYLOAD_BYTES of one-byte DATA frames, then EOF."""
    await peer.expect_open()
    burst = frame(TCP_DATA, b"z") * BURST_FRAMES
    for _ in range(PAYLOAD_BYTES // BURST_FRAMES):
        peer.raw(burst)
        await peer.writer.drain()
    peer.raw(frame(TCP_EOF))
    await peer.writer.drain()


async def received(reader: asyncio.StreamReader) -> bytes:
    got = bytearray()
    while data := await reader.read(65536):
        got += data
    return bytes(got)


def test_a_flood_of_one_byte_frames_on_several_connections_keeps_the_loops_turns_short() -> None:
    async def scenario() -> None:
        async with tcp_tunnel(max_conn_count=CONNECTIONS) as run:
            peers = await run.pooled(CONNECTIONS)
            visitors = [await run.visit() for _ in range(CONNECTIONS)]
            watch = TurnWatch()
            try:
                async with asyncio.timeout(IO_TIMEOUT_S * 3):
                    floods = [asyncio.ensure_future(flood(peer)) for peer in peers]
                    got = await asyncio.gather(*(received(reader) for reader, _ in visitors))
                    await asyncio.gather(*floods)
            finally:
                watch.running = False
            assert got == [b"z" * PAYLOAD_BYTES] * CONNECTIONS
            frames = CONNECTIONS * PAYLOAD_BYTES
            # Each connection's pump gives the loop back after EVENTS_PER_TURN frames; the
            # four run in the same turns, so the loop turns at least as often as one needs.
            assert watch.turns >= PAYLOAD_BYTES // EVENTS_PER_TURN, (
                f"{frames} frames on {CONNECTIONS} connections parsed in {watch.turns} turns "
                f"of the loop: more than EVENTS_PER_TURN ({EVENTS_PER_TURN}) a connection a turn"
            )

    asyncio.run(scenario())
