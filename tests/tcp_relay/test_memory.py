"""What a TCP visitor connection costs the relay when one end stops reading: the other end
offers 100 MiB, the relay holds a bounded amount (tracemalloc, in this process: the relay's
objects, the peer and the visitor, whose own buffers are a few hundred KiB at most), and
once the reader reads again every byte arrives, intact."""

from __future__ import annotations

import asyncio
import hashlib
import tracemalloc

from apps.tcp_frames_peer import tcp_tunnel
from harness.waiting import IO_TIMEOUT_S

from tunnelsite_client.limits import TCP_DATA, TCP_EOF

MIB = 1024 * 1024
TOTAL = 100 * MIB
BLOCK = bytes(range(256)) * 1024  # 256 KiB, sent again and again
# What the relay may hold for one stalled connection: its inbox's high-water mark (1 MiB),
# a read, a slice and the visitor's write buffer, plus the test's own ends.
BOUND = 6 * MIB
STALL_S = 2.0  # how long the stalled end is left not reading: what the test is about


def _expected_sha() -> str:
    digest = hashlib.sha256()
    for _ in range(TOTAL // len(BLOCK)):
        digest.update(BLOCK)
    return digest.hexdigest()


def test_a_visitor_that_never_reads_costs_the_relay_a_bounded_amount() -> None:
    async def scenario() -> None:
        async with tcp_tunnel() as run:
            (peer,) = await run.pooled()
            reader, writer = await run.visit()
            await peer.expect_open()

            async def app_sends() -> None:
                for _ in range(TOTAL // len(BLOCK)):
                    peer.data(BLOCK)
                    await peer.writer.drain()
                peer.eof()

            tracemalloc.start()
            try:
                base = tracemalloc.get_traced_memory()[0]
                sending = asyncio.ensure_future(app_sends())
                done, _ = await asyncio.wait({sending}, timeout=STALL_S)
                held = tracemalloc.get_traced_memory()[1] - base
            finally:
                tracemalloc.stop()
            assert not done, "100 MiB went nowhere: the visitor was not stalled"
            assert run.tunnel.bytes_out < TOTAL // 2
            assert held < BOUND, f"the relay held {held / MIB:.1f} MiB for a stalled visitor"
            digest = hashlib.sha256()
            async with asyncio.timeout(IO_TIMEOUT_S * 3):
                while data := await reader.read(MIB):
                    digest.update(data)
            await sending
            assert digest.hexdigest() == _expected_sha()
            writer.write_eof()
            assert await peer.read_until_eof() == b""

    asyncio.run(scenario())


def test_an_lt_that_never_reads_costs_the_relay_a_bounded_amount() -> None:
    async def scenario() -> None:
        async with tcp_tunnel() as run:
            (peer,) = await run.pooled()
            reader, writer = await run.visit()
            writer.write(b"first")
            await peer.expect_open()
            assert await peer.next_frame() == (TCP_DATA, b"first")  # then it stops reading

            async def visitor_sends() -> None:
                for _ in range(TOTAL // len(BLOCK)):
                    writer.write(BLOCK)
                    await writer.drain()
                writer.write_eof()

            tracemalloc.start()
            try:
                base = tracemalloc.get_traced_memory()[0]
                sending = asyncio.ensure_future(visitor_sends())
                done, _ = await asyncio.wait({sending}, timeout=STALL_S)
                held = tracemalloc.get_traced_memory()[1] - base
            finally:
                tracemalloc.stop()
            assert not done, "100 MiB went nowhere: lt was not stalled"
            assert run.tunnel.bytes_in < TOTAL // 2
            assert held < BOUND, f"the relay held {held / MIB:.1f} MiB for a stalled lt"
            digest = hashlib.sha256()
            async with asyncio.timeout(IO_TIMEOUT_S * 3):
                while True:
                    kind, payload = await peer.next_frame()
                    if kind == TCP_EOF:
                        break
                    assert kind == TCP_DATA
                    digest.update(payload)
            await sending
            assert digest.hexdigest() == _expected_sha()
            assert run.tunnel.bytes_in == TOTAL + len(b"first")
            peer.eof()
            assert await reader.read(-1) == b""

    asyncio.run(scenario())
