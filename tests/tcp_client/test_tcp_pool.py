"""A TCP tunnel's pool (tunnelsite_client/tcp_pool.py) on a real pool listener: spare connections,
one
more per visitor up to max_conn_count, and the extra ones closed once idle."""

from __future__ import annotations

import asyncio

from harness.waiting import IO_TIMEOUT_S, wait_until_async

from tunnelsite_client.limits import TCP_EOF, TCP_OPEN, TCP_SPARE_CONNECTIONS
from tunnelsite_client.registration import Registration
from tunnelsite_client.tcp_pool import TcpPool

from .peers import Recorder, RelayEnd, local_app, run

MAX_CONN = 4
# The setting under test, short so that the test sees extras close (default 30 s).
SPARE_IDLE_S = 0.3


def test_the_pool_keeps_spares_grows_with_visitors_to_the_limit_and_sheds_idle_extras() -> None:
    async def test() -> None:
        ends: list[RelayEnd] = []

        async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            ends.append(RelayEnd(reader, writer))

        listener = await asyncio.start_server(accept, "127.0.0.1", 0)
        port = listener.sockets[0].getsockname()[1]
        registration = Registration(
            "tcpa1b2c3", "tcp://127.0.0.1:41000", port, MAX_CONN, "127.0.0.1", tcp_port=41000
        )
        ups: list[int] = []
        async with local_app("echo") as app:
            pool = TcpPool(
                registration, "127.0.0.1", app.port, Recorder(), ups.append,
                spare_idle_s=SPARE_IDLE_S,
            )  # fmt: skip
            running = asyncio.create_task(pool.run())
            await wait_until_async(lambda: pool.up == TCP_SPARE_CONNECTIONS)
            assert len(ends) == TCP_SPARE_CONNECTIONS
            # Visitors on every connection there is: the pool grows to MAX_CONN, no further.
            busy = 0
            while busy < len(ends):
                await ends[busy].send(TCP_OPEN, f"198.51.100.{busy} 4000{busy}".encode())
                busy += 1
                await wait_until_async(lambda n=busy: pool.busy == n)
                await wait_until_async(lambda n=busy: len(ends) >= min(MAX_CONN, n + 2))
            assert len(ends) == MAX_CONN and pool.busy == MAX_CONN
            # Each visitor says goodbye; then idle extras go, the spares stay.
            for end in ends:
                async with asyncio.timeout(IO_TIMEOUT_S):
                    assert (await end.exchange(b"bye"))[1] == TCP_EOF
            await wait_until_async(lambda: pool.busy == 0)
            await wait_until_async(lambda: pool.up == TCP_SPARE_CONNECTIONS)
            await asyncio.sleep(SPARE_IDLE_S * 3)  # the spares' idle time passing is under test
            assert pool.up == TCP_SPARE_CONNECTIONS, "the spares stay however long idle"
            assert min(ups[ups.index(MAX_CONN) :]) == TCP_SPARE_CONNECTIONS, ups
            assert len(ends) == MAX_CONN, "closed extras are not reopened"
            assert not running.done()
            running.cancel()
            await asyncio.gather(running, return_exceptions=True)
        for end in ends:
            end.writer.close()
        listener.close()

    run(test)
