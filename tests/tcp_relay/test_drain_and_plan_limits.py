"""A TCP tunnel under the relay's drain and its owner's plan: the drain closes its public
listener, a crashed `lt tcp` restarted within the grace period takes its place under the
live-TCP-tunnel limit, and a plan's idle timeout spares a tunnel with visitors connected.
Real loopback sockets; the session rows go to tests/tcp_relay/test_registration.py's double."""

from __future__ import annotations

import asyncio
from typing import Any

from apps.tcp_frames_peer import tcp_tunnel
from harness.accounts import upgraded_pool_connection
from harness.waiting import wait_until_async

from relay import face
from relay.pool.quota import Quota
from relay.pool.registry import get_registry

from .test_registration import WAIT_S, RecordedRows, bindable, closed, free_range, register, rows

__all__ = ["rows"]  # the fixture


def test_the_drain_stops_accepting_tcp_visitors(rows: RecordedRows, settings: Any) -> None:
    settings.RELAY_TCP_PORTS = free_range(4)

    async def scenario() -> None:
        try:
            answer = await register("db", face.TcpAsk())
            reader, writer = await asyncio.open_connection("127.0.0.1", answer.tcp_port)
            writer.close()  # accepted before the drain
            assert await get_registry().drain(WAIT_S)
            await wait_until_async(lambda: bindable(answer.tcp_port), WAIT_S, "no listener")
        finally:
            await closed()

    asyncio.run(scenario())


def test_a_crashed_lt_tcp_restarted_within_grace_is_not_refused(
    rows: RecordedRows, settings: Any
) -> None:
    settings.RELAY_TCP_PORTS = free_range(4)
    limit = face.TcpAsk(max_live=1)

    async def scenario() -> None:
        try:
            await register("db1", limit, client_id="lt-run-1")
            tunnel = get_registry().get("db1")
            assert tunnel is not None
            _, writer = await upgraded_pool_connection(tunnel)
            await wait_until_async(lambda: tunnel.connected_sockets == 1, WAIT_S)
            writer.transport.abort()  # lt crashed: the tunnel waits out its grace period
            await wait_until_async(lambda: tunnel.connected_sockets == 0, WAIT_S)
            again = await register("db2", limit, client_id="lt-run-2")  # a new process
            assert again.tcp_port
            assert get_registry().get("db1") is None and tunnel.closed
        finally:
            await closed()

    asyncio.run(scenario())


def test_a_plans_idle_timeout_spares_a_tcp_tunnel_with_a_visitor_connected() -> None:
    async def scenario() -> None:
        async with tcp_tunnel() as run:
            closed_for: list[str] = []
            # the test registry has no close(): record what the quota closes
            run.tunnel.registry.close = lambda _tunnel, reason: closed_for.append(reason)  # type: ignore[attr-defined]
            quota = Quota(per_minute=0, per_day_bytes=0, max_body_bytes=0, idle_timeout_s=30)
            run.tunnel.quota = quota
            (peer,) = await run.pooled()
            await run.visit()
            await peer.expect_open()  # a quiet session: no byte after the OPEN
            later = run.tunnel.last_activity + 31
            assert not quota.check_idle(run.tunnel, now=later)
            assert closed_for == []
            quota.cancel_idle_timer()
            run.tunnel.tcp.visitors.clear()  # type: ignore[union-attr]
            assert quota.check_idle(run.tunnel, now=later + 31)  # nobody connected: idle
            assert closed_for == ["idle for 30 s"]

    asyncio.run(scenario())
