"""One AddressWatch per pool (tunnelsite_client/address_watch.py): each distinct local address of
the
pool's connections is checked once per interval, however many connections share it; a gone
address wakes the connections made from it and only those; close() ends the watch; a
connection whose socket cannot say its address waits quietly (nothing raised, nothing woken).

Real loopback connections, from 127.0.0.1 and from 127.0.0.2; the check is the real one
(is_local) with addresses the test declares gone on top: taking an address away for real
needs root and a namespace, which tests/network/test_address_change.py does end to end.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from harness.waiting import IO_TIMEOUT_S, wait_until_async

from tunnelsite_client.address_watch import AddressWatch, is_local, local_address

INTERVAL_S = 0.02  # short, so a test sees many rounds in a fraction of a second
HOME, OTHER = "127.0.0.1", "127.0.0.2"
ON_HOME, ON_OTHER = 20, 5  # connections from each address
ROUNDS = 10  # rounds of checks a test waits for


class Checks:
    """is_local, counting its calls per address; addresses in `gone` are not local."""

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()
        self.gone: set[str] = set()

    def __call__(self, family: int, address: str) -> bool:
        self.calls[address] += 1
        return address not in self.gone and is_local(family, address)


Writers = dict[str, list[asyncio.StreamWriter]]


@asynccontextmanager
async def connections() -> AsyncIterator[Writers]:
    """ON_HOME connections from HOME and ON_OTHER from OTHER, to a loopback server."""

    async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()
        writer.close()

    server = await asyncio.start_server(hold, HOME, 0)
    port = server.sockets[0].getsockname()[1]
    writers: Writers = {HOME: [], OTHER: []}
    try:
        for source, count in ((HOME, ON_HOME), (OTHER, ON_OTHER)):
            for _ in range(count):
                _, writer = await asyncio.open_connection(HOME, port, local_addr=(source, 0))
                writers[source].append(writer)
        yield writers
    finally:
        for writer in writers[HOME] + writers[OTHER]:
            writer.close()
        server.close()


def run(test: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(test(), IO_TIMEOUT_S * 2))


def test_each_distinct_address_is_checked_once_per_interval_however_many_connections() -> None:
    async def test() -> None:
        checks = Checks()
        watch = AddressWatch(checks, INTERVAL_S)
        async with connections() as writers:
            started = time.monotonic()
            waiters = [asyncio.create_task(watch.gone(w)) for w in writers[HOME] + writers[OTHER]]
            await wait_until_async(lambda: checks.calls[HOME] >= ROUNDS, message="rounds")
            rounds = (time.monotonic() - started) / INTERVAL_S + 1  # sleep never ends early
            assert watch.watched == {(writers[HOME][0].get_extra_info("socket").family, a)
                                     for a in (HOME, OTHER)}  # fmt: skip
            assert checks.calls[HOME] <= rounds and checks.calls[OTHER] <= rounds, (
                checks.calls,
                rounds,
            )
            assert abs(checks.calls[HOME] - checks.calls[OTHER]) <= 1
            assert not any(w.done() for w in waiters)
            await watch.close()
            await asyncio.wait(waiters, timeout=IO_TIMEOUT_S)
            assert all(w.cancelled() for w in waiters) and not watch.running

    run(test)


def test_a_gone_address_wakes_every_connection_on_it_and_only_those() -> None:
    async def test() -> None:
        checks = Checks()
        watch = AddressWatch(checks, INTERVAL_S)
        async with connections() as writers:
            home = [asyncio.create_task(watch.gone(w)) for w in writers[HOME]]
            other = [asyncio.create_task(watch.gone(w)) for w in writers[OTHER]]
            await wait_until_async(lambda: checks.calls[OTHER] >= 1, message="a first check")
            checks.gone.add(OTHER)
            done, _ = await asyncio.wait(other, timeout=IO_TIMEOUT_S)
            assert done == set(other) and all(t.exception() is None for t in other)
            assert not any(t.done() for t in home)
            assert {address for _, address in watch.watched} == {HOME}
            calls = checks.calls[OTHER]
            await wait_until_async(lambda: checks.calls[HOME] >= calls + ROUNDS, message="rounds")
            assert checks.calls[OTHER] == calls  # a gone address is not checked again
            for task in home:  # the pool closes its connections: nothing left to watch
                task.cancel()
            await asyncio.gather(*home, return_exceptions=True)
            assert watch.watched == set()
            await wait_until_async(lambda: not watch.running, message="the watch to end")
            await watch.close()

    run(test)


def test_close_cancels_the_waiting_connections_and_the_watch() -> None:
    async def test() -> None:
        watch = AddressWatch(Checks(), INTERVAL_S)
        async with connections() as writers:
            waiters = [asyncio.create_task(watch.gone(w)) for w in writers[HOME]]
            await wait_until_async(lambda: watch.running, message="the watch to start")
            await watch.close()
            done, _ = await asyncio.wait(waiters, timeout=IO_TIMEOUT_S)
            assert done == set(waiters) and all(t.cancelled() for t in waiters)
            assert not watch.running and watch.watched == set()

    run(test)


def test_a_socket_that_cannot_say_its_address_waits_quietly() -> None:
    """getsockname() fails on a socket closed meanwhile: no address to watch, no exception
    (the pool would otherwise take the failed watch for a move and drop the connection)."""

    async def test() -> None:
        checks = Checks()
        watch = AddressWatch(checks, INTERVAL_S)
        async with connections() as writers:
            writer = writers[HOME][0]
            writer.transport.abort()
            await wait_until_async(lambda: writer.get_extra_info("socket").fileno() == -1)
            assert local_address(writer) is None
            waiter = asyncio.create_task(watch.gone(writer))
            done, _ = await asyncio.wait({waiter}, timeout=INTERVAL_S * ROUNDS)
            assert done == set() and not watch.running and checks.calls == Counter()
            waiter.cancel()
            await asyncio.gather(waiter, return_exceptions=True)
            await watch.close()

    run(test)
