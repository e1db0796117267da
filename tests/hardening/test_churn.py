"""Churn: thousands of register -> connect -> request -> disconnect -> DELETE cycles, run
concurrently with raw asyncio sockets, leave no file descriptors, tasks or memory behind.

The count is set by CHURN_CYCLES (default below: what fits comfortably in well under a
minute on a 2-core CI machine, measured; see docs/security.md).
"""

from __future__ import annotations

import asyncio
import json
import os
import time

import pytest
from harness.proc import rss_kib
from harness.relay import NO_LIVE_TUNNEL_CAP, Relay
from harness.waiting import wait_until, wait_until_async

CYCLES = int(os.environ.get("CHURN_CYCLES", "3000"))
CONCURRENCY = 48
WARM_UP = 200


@pytest.fixture(scope="module")
def churn_relay(module_relay_factory) -> Relay:
    # Counters flushed every second, as closed tunnels wait for a flush to be forgotten.
    # The churn's 48 workers all register from 127.0.0.1 at once: the anonymous cap of live
    # tunnels per address is not what this test is about (NO_LIVE_TUNNEL_CAP). The grace
    # period stays the default: every cycle DELETEs its tunnel, and a 1 s grace let a loaded
    # machine expire a tunnel between its registration and its pool socket, or its last
    # request and its DELETE (a 404 or a refused connection, not a leak).
    return module_relay_factory(RELAY_MAX_SOCKETS=1, RELAY_FLUSH_S=1, **NO_LIVE_TUNNEL_CAP)


def fd_count(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


async def exchange(port: int, raw: bytes) -> tuple[int, bytes]:
    """One request on its own connection (Connection: close); status and body."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(raw)
        async with asyncio.timeout(10):
            data = await reader.read()
    finally:
        writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body


async def cycle(relay: Relay) -> None:
    site = f"127.0.0.1:{relay.port}"
    status, body = await exchange(
        relay.port, f"GET /?new HTTP/1.1\r\nHost: {site}\r\nConnection: close\r\n\r\n".encode()
    )
    assert status == 200, (status, body)
    info = json.loads(body)
    name, pool_port = info["id"], info["port"]
    pool_reader, pool_writer = await asyncio.open_connection("127.0.0.1", pool_port)
    try:
        # One request through the tunnel, answered by this pool socket. The relay may not
        # have accepted the socket yet (then 503): ask again until it has, within a deadline.
        visit = f"GET /c HTTP/1.1\r\nHost: {relay.host(name)}\r\nConnection: close\r\n\r\n"
        request = asyncio.ensure_future(pool_reader.readuntil(b"\r\n\r\n"))
        answers: list[asyncio.Future[tuple[int, bytes]]] = []

        async def reaches_the_pool() -> bool:
            answer = asyncio.ensure_future(exchange(relay.port, visit.encode()))
            answers.append(answer)
            await asyncio.wait({request, answer}, return_when=asyncio.FIRST_COMPLETED)
            if request.done():
                return True
            assert answer.result()[0] == 503, answer.result()
            return False

        await wait_until_async(reaches_the_pool, 10, "the relay to take the pool socket")
        request.result()
        pool_writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        assert await answers[-1] == (200, b"ok")
    finally:
        request.cancel()
        pool_writer.close()
    delete = f"DELETE /api/tunnels/{name} HTTP/1.1\r\nHost: {site}\r\nConnection: close\r\n"
    status, body = await exchange(relay.port, delete.encode() + b"\r\n")
    assert status == 204, body


async def churn(relay: Relay, count: int) -> None:
    queue = iter(range(count))

    async def worker() -> None:
        for _ in queue:
            await cycle(relay)

    await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))


def settled(relay: Relay, baseline: dict) -> bool:
    status = relay.status()
    return (
        status["tunnels"] == 0
        and status["in_flight"] == 0
        and status["tasks"] <= baseline["tasks"]
        and fd_count(relay.process.pid) <= baseline["fds"]
    )


def test_churn_leaves_no_descriptors_tasks_or_memory_behind(churn_relay):
    pid = churn_relay.process.pid
    asyncio.run(churn(churn_relay, WARM_UP))
    wait_until(lambda: churn_relay.status()["tunnels"] == 0, 10, "the warm-up to settle")
    baseline = {
        "fds": fd_count(pid),
        "tasks": churn_relay.status()["tasks"],
        "rss": rss_kib(pid),
    }

    started = time.monotonic()
    asyncio.run(churn(churn_relay, CYCLES))
    elapsed = time.monotonic() - started

    wait_until(lambda: settled(churn_relay, baseline), 15, f"the relay to settle: {baseline}")
    grown_kib = rss_kib(pid) - baseline["rss"]
    print(
        f"{CYCLES} cycles in {elapsed:.1f} s ({CYCLES / elapsed:.0f}/s); fds {fd_count(pid)} "
        f"(baseline {baseline['fds']}), tasks {churn_relay.status()['tasks']} "
        f"(baseline {baseline['tasks']}), RSS +{grown_kib} KiB"
    )
    assert grown_kib < 16 * 1024
