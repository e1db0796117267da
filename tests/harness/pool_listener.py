"""A real pool listener on loopback for one Tunnel, in this process (no relay process):
the double the relay's byte-level tests (tests/sockets) run Tunnel and PoolSocket against."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from types import SimpleNamespace
from typing import Any

from relay.pool.socket import PoolSocket
from relay.pool.tunnel import Tunnel
from relay.protocol import DEFAULT_MAX_HEADER_BYTES


class LoopRegistry:
    """The parts of `relay.pool.registry.Registry` a Tunnel calls, with real settings values."""

    def __init__(self, **overrides: Any) -> None:
        values = {
            "RELAY_POOL_ALLOW_ANY_IP": False,
            "RELAY_GRACE_S": 30.0,
            "RELAY_SPARE_SOCKETS": 2,
            "RELAY_RAW_POOL_REUSE": True,
            "RELAY_MAX_HEADER_BYTES": DEFAULT_MAX_HEADER_BYTES,  # Tunnel.new_socket's
        }
        values.update(overrides)
        self.settings = SimpleNamespace(**values)
        self.expiries: list[Tunnel] = []

    def schedule_expiry(self, tunnel: Tunnel) -> None:
        self.expiries.append(tunnel)


@asynccontextmanager
async def pool_listener(
    max_conn_count: int = 2, client_ip: str = "127.0.0.1", **settings: Any
) -> AsyncIterator[Tunnel]:
    loop = asyncio.get_running_loop()
    tunnel = Tunnel(
        name="test-tunnel",
        owner="ip:127.0.0.1",
        client_ip=client_ip,
        max_conn_count=max_conn_count,
        registry=LoopRegistry(**settings),  # type: ignore[arg-type]
    )
    server = await loop.create_server(lambda: PoolSocket(tunnel, 16384), "127.0.0.1", 0)
    tunnel.server = server
    tunnel.port = server.sockets[0].getsockname()[1]
    try:
        yield tunnel
    finally:
        tunnel.close("test over")
        server.close()
        await server.wait_closed()


async def connect(
    tunnel: Tunnel, source: str = "127.0.0.1"
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", tunnel.port, local_addr=(source, 0))
