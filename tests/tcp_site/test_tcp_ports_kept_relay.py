"""relay/pool/tcp_ports.py's `open_side` with a preferred port (the one the site says the
name had): given when free, on a real loopback listener; else a random free port, never a
held or reserved one."""

from __future__ import annotations

import asyncio
import socket
from types import SimpleNamespace

from harness.pool_listener import LoopRegistry

from relay.pool.tcp_ports import open_side
from relay.pool.tcp_side import TcpSide
from relay.pool.tunnel import Tunnel

SPAN = 4


def _free_span() -> int:
    """The first of SPAN consecutive ports free on loopback now."""
    for base in range(32000, 60000, 97):
        socks = [socket.socket() for _ in range(SPAN)]
        try:
            for offset, sock in enumerate(socks):
                sock.bind(("127.0.0.1", base + offset))
            return base
        except OSError:
            continue
        finally:
            for sock in socks:
                sock.close()
    raise AssertionError("no free port range on this machine")


def _tunnel(name: str) -> Tunnel:
    return Tunnel(
        name=name,
        owner="user:1",
        client_ip="127.0.0.1",
        max_conn_count=10,
        registry=LoopRegistry(),  # type: ignore[arg-type]
    )


def _given(preferred: int, reserved: frozenset[int] = frozenset(), held: int = 0) -> set[int]:
    """The ports open_side gives over 12 tries with `preferred` (after `held` is taken), all
    as offsets in the range."""
    base = _free_span()
    config = SimpleNamespace(RELAY_TCP_PORTS=(base, base + SPAN - 1), RELAY_TCP_BIND="127.0.0.1")

    async def scenario() -> set[int]:
        holders: list[Tunnel] = []
        if held:
            holder = _tunnel("holder")
            holder.tcp = TcpSide(base + held)
            holders.append(holder)
        given: set[int] = set()
        for _ in range(12):
            wanted = SimpleNamespace(
                port=0,
                reserved=frozenset(base + port for port in reserved),
                max_live=0,
                preferred=base + preferred,
            )
            side = await open_side(_tunnel("db"), config, holders, wanted)
            given.add(side.port - base)
            server = side.server
            assert server is not None
            side.close("test over")
            await server.wait_closed()
        return given

    return asyncio.run(scenario())


def test_a_free_preferred_port_is_given_every_time() -> None:
    assert _given(2) == {2}


def test_a_held_preferred_port_is_not_given() -> None:
    assert 2 not in _given(2, held=2)


def test_a_reserved_preferred_port_is_not_given() -> None:
    assert 2 not in _given(2, reserved=frozenset({2}))
