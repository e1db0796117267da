"""relay/pool/tcp_ports.py's search for a TCP tunnel's port, on real loopback listeners: over
small ranges and reserved sets (hypothesis), every free port that is not reserved is handed
out once, a reserved one never, and the range then answers 503; a preferred port (the one
the site says the name had) is given when free, else a random free one, never a held or
reserved one."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest
from harness.pool_listener import LoopRegistry
from hypothesis import HealthCheck, given
from hypothesis import settings as examples
from hypothesis import strategies as st

from bench.tcp_scenario import free_port_range
from relay.pool.errors import RegistrationError
from relay.pool.tcp_ports import open_side
from relay.pool.tcp_side import TcpSide
from relay.pool.tunnel import Tunnel

SPAN = 6  # the largest range tried


BASE = int(free_port_range(SPAN).split("-")[0])  # SPAN consecutive loopback ports free now


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


def _given(preferred: int, reserved: frozenset[int] = frozenset(), held: int = 0) -> set[int]:
    """The ports open_side gives over 12 tries with `preferred` (after `held` is taken), all
    as offsets in the range."""
    base = BASE
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
