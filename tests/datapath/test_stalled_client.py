"""Item 17: a tunnel client that stops reading while a request body is written to it.

Writes to a pool socket have a deadline like reads do, so each visitor gets a 504 within
the response timeout, and the relay lets go of the sockets and spooled bodies."""

from __future__ import annotations

import asyncio
import time

import pytest
from harness.fake_client import FakeTunnelClient, UpgradingTunnelClient
from harness.proc import deleted_files, open_fds, rss_kib
from harness.waiting import wait_until

TIMEOUT_S = 2  # RELAY_RESPONSE_TIMEOUT_S, the deadline this test is about
BODY = 24 * 1024 * 1024  # far more than loopback socket buffers hold
VISITORS = 4


async def _post(port: int, host: str) -> tuple[bytes, float]:
    started = time.monotonic()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(
            f"POST /upload HTTP/1.1\r\nHost: {host}\r\nAccept: application/json\r\n"
            f"Content-Length: {BODY}\r\n\r\n".encode()
        )
        chunk = b"x" * (1024 * 1024)
        for _ in range(BODY // len(chunk)):
            writer.write(chunk)
            await writer.drain()
        async with asyncio.timeout(30):
            head = await reader.readuntil(b"\r\n\r\n")
        return head, time.monotonic() - started
    finally:
        writer.close()


@pytest.mark.parametrize(
    "kind", [FakeTunnelClient, UpgradingTunnelClient], ids=["raw-pool", "upgraded-pool"]
)
def test_a_client_that_never_reads_a_body_gets_its_visitors_a_504_and_frees_everything(
    relay_factory, kind
):
    relay = relay_factory(RELAY_RESPONSE_TIMEOUT_S=TIMEOUT_S)
    pid = relay.process.pid
    client = kind(relay)
    try:
        client.connect(VISITORS)  # registered, connected, and never reading a byte
        baseline = len(open_fds(pid))
        rss_before = rss_kib(pid)

        async def main() -> list[tuple[bytes, float]]:
            return await asyncio.gather(
                *(_post(relay.port, relay.host(client.name)) for _ in range(VISITORS))
            )

        results = asyncio.run(main())
        # Writes wait for the client (backpressure, on an upgraded connection through Twisted's
        # producer): the bodies stay spooled, never all in the relay's memory.
        assert rss_kib(pid) - rss_before < VISITORS * BODY // 1024 // 2

        for head, elapsed in results:
            assert head.startswith(b"HTTP/1.1 504 "), head
            # the body's upload time, plus the write deadline, plus a margin
            assert elapsed < 15, elapsed
        # The relay dropped the stalled pool sockets, the visitors' connections and the spools.
        wait_until(lambda: deleted_files(pid) == 0, 5, "the spooled bodies to be closed")
        wait_until(lambda: len(open_fds(pid)) <= baseline - VISITORS, 5, "descriptors to be freed")
        assert all(pool_socket.is_closed(5) for pool_socket in client.sockets)
    finally:
        client.close()
