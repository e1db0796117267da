"""A wildcard IPv6 bind ("::", `runrelay --bind ::`) listens on both families, as Twisted's
public listener does: a TCP tunnel's port and a tunnel's raw pool port accept visitors from
127.0.0.1 and from ::1 (attack finding 5: asyncio's create_server made them IPv6-only).
This machine has IPv6 on loopback (`ip -6 addr show lo`), so nothing is skipped."""

from __future__ import annotations

import asyncio
import errno
from types import SimpleNamespace

import pytest
from harness.pool_listener import LoopRegistry
from harness.waiting import IO_TIMEOUT_S

from relay.pool import ports
from relay.pool.errors import RegistrationError
from relay.pool.tcp_ports import open_side
from relay.pool.tunnel import Tunnel

CLIENTS = ("127.0.0.1", "::1")


def _tunnel() -> Tunnel:
    return Tunnel(
        name="dual",
        owner="user:1",
        client_ip="127.0.0.1",
        max_conn_count=10,
        registry=LoopRegistry(),  # type: ignore[arg-type]
    )


async def _reaches(port: int) -> list[str]:
    """The clients of CLIENTS whose connection to `port` was accepted."""
    reached = []
    for host in CLIENTS:
        try:
            async with asyncio.timeout(IO_TIMEOUT_S):
                _, writer = await asyncio.open_connection(host, port)
        except ConnectionRefusedError:
            continue
        writer.close()
        reached.append(host)
    return reached


def _port(server: asyncio.Server) -> int:
    port: int = server.sockets[0].getsockname()[1]
    return port


def test_a_listener_on_the_ipv6_wildcard_accepts_ipv4_and_ipv6_clients() -> None:
    async def scenario() -> None:
        server = await ports.serve(asyncio.Protocol, "::", 0, backlog=8)
        try:
            assert await _reaches(_port(server)) == list(CLIENTS)
        finally:
            server.close()

    asyncio.run(scenario())


def test_a_tcp_tunnels_port_on_the_ipv6_wildcard_accepts_ipv4_and_ipv6_visitors() -> None:
    async def scenario() -> None:
        probe = await ports.serve(asyncio.Protocol, "::", 0, backlog=8)
        free = _port(probe)
        probe.close()
        await probe.wait_closed()
        config = SimpleNamespace(RELAY_TCP_PORTS=(free, free), RELAY_TCP_BIND="::")
        wanted = SimpleNamespace(port=0, reserved=frozenset(), max_live=0, preferred=0)
        tunnel = _tunnel()
        side = await open_side(tunnel, config, [], wanted)
        try:
            assert side.port == free
            assert await _reaches(free) == list(CLIENTS)
            # the port is held on both families: a second listener there is refused
            with pytest.raises(OSError) as held:
                await ports.serve(asyncio.Protocol, "127.0.0.1", free, backlog=8)
            assert held.value.errno == errno.EADDRINUSE
            with pytest.raises(RegistrationError) as full:
                await open_side(_tunnel(), config, [], wanted)
            assert full.value.status == 503
        finally:
            tunnel.close("test over")
            side.close("test over")

    asyncio.run(scenario())


def test_a_raw_pool_port_on_the_ipv6_wildcard_accepts_ipv4_and_ipv6_clients() -> None:
    async def scenario() -> None:
        tunnel = _tunnel()
        config = SimpleNamespace(
            RELAY_POOL_BIND="::", RELAY_MAX_HEADER_BYTES=16384, RELAY_POOL_PORTS=None
        )
        server = await ports.listen(tunnel, config, {})
        try:
            assert await _reaches(_port(server)) == list(CLIENTS)
        finally:
            server.close()
            tunnel.close("test over")

    asyncio.run(scenario())
