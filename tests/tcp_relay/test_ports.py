"""relay/pool/tcp_ports.py's search for a TCP tunnel's port, on real loopback listeners: over
small ranges and reserved sets (hypothesis), every free port that is not reserved is handed
out once, a reserved one never, and the range then answers 503."""

from __future__ import annotations

import asyncio
import socket
from types import SimpleNamespace

import pytest
from harness.pool_listener import LoopRegistry
from hypothesis import HealthCheck, given
from hypothesis import settings as examples
from hypothesis import strategies as st

from relay.pool.errors import RegistrationError
from relay.pool.tcp_ports import open_side
from relay.pool.tunnel import Tunnel

SPAN = 6  # the largest range tried


def _free_span() -> int:
    """The first of SPAN consecutive ports free on loopback now."""
    for base in range(31000, 60000, 89):
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


BASE = _free_span()


def _tunnel(name: str) -> Tunnel:
    return Tunnel(
        name=name,
        owner="user:1",
        client_ip="127.0.0.1",
        max_conn_count=10,
        registry=LoopRegistry(),  # type: ignore[arg-type]
    )


async def _hand_out(size: int, reserved: frozenset[int]) -> tuple[list[int], RegistrationError]:
    """Open TCP sides on BASE..BASE+size-1 until the range is full; the ports given and the
    refusal that ended it."""
    config = SimpleNamespace(RELAY_TCP_PORTS=(BASE, BASE + size - 1), RELAY_TCP_BIND="127.0.0.1")
    wanted = SimpleNamespace(port=0, reserved=reserved, max_live=0, preferred=0)
    tunnels: list[Tunnel] = []
    try:
        while True:
            tunnel = _tunnel(f"t{len(tunnels)}")
            try:
                tunnel.tcp = await open_side(tunnel, config, tunnels, wanted)
            except RegistrationError as refusal:
                return [t.tcp.port for t in tunnels if t.tcp is not None], refusal
            tunnels.append(tunnel)
            assert len(tunnels) <= size, "more tunnels than ports"
    finally:
        for tunnel in tunnels:
            tunnel.close("test over")


@examples(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    size=st.integers(1, SPAN),
    reserved=st.frozensets(st.integers(0, SPAN + 2).map(lambda offset: BASE + offset)),
)
def test_reserved_ports_are_never_handed_out_and_every_other_port_is(
    size: int, reserved: frozenset[int]
) -> None:
    given_ports, refusal = asyncio.run(_hand_out(size, reserved))
    in_range = set(range(BASE, BASE + size))
    assert not set(given_ports) & reserved
    assert len(given_ports) == len(set(given_ports))
    assert set(given_ports) == in_range - reserved
    assert refusal.status == 503


def test_an_asked_port_that_is_reserved_for_someone_else_is_refused() -> None:
    config = SimpleNamespace(RELAY_TCP_PORTS=(BASE, BASE + 1), RELAY_TCP_BIND="127.0.0.1")
    wanted = SimpleNamespace(port=BASE, reserved=frozenset({BASE}), max_live=0, preferred=0)

    async def scenario() -> None:
        tunnel = _tunnel("t")
        with pytest.raises(RegistrationError) as caught:
            await open_side(tunnel, config, [], wanted)
        assert caught.value.status == 409 and tunnel.tcp is None

    asyncio.run(scenario())


def test_a_bind_address_this_host_lacks_is_a_clear_503() -> None:
    config = SimpleNamespace(RELAY_TCP_PORTS=(BASE, BASE + 1), RELAY_TCP_BIND="192.0.2.77")
    wanted = SimpleNamespace(port=0, reserved=frozenset(), max_live=0, preferred=0)

    async def scenario() -> None:
        with pytest.raises(RegistrationError) as caught:
            await open_side(_tunnel("t"), config, [], wanted)
        assert caught.value.status == 503
        assert "on 192.0.2.77 (RELAY_TCP_BIND)" in caught.value.message

    asyncio.run(scenario())
