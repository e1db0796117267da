"""Fixtures of the TCP tunnels' end-to-end tests: the bulk TCP app, a relay that offers TCP
tunnels (RELAY_TCP_PORTS, the switch; every other setting its default), its users, `lt tcp`.

The classes behind them are in tests/harness/tcp_tunnels.py."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from harness.processes import ProcessGroup
from harness.relay import Relay
from harness.tcp_tunnels import LtTcpLauncher, free_port_range, make_users, start_tcp_app

# Ports of the module relay's RELAY_TCP_PORTS: a tunnel per test at most, each released when
# its lt stops; room to spare for a port another program takes meanwhile.
RANGE_WIDTH = 20
# Users of the module relay, one per test that opens a tunnel (the default plan allows
# RELAY_DEFAULT_PLAN_MAX_TCP_TUNNELS=2 live TCP tunnels each): made in one `manage.py shell`.
USERS = [f"tcp-user-{i}" for i in range(12)]


@pytest.fixture(scope="module")
def tcp_app(module_group: ProcessGroup) -> int:
    """bench/tcp_app.py's port (SEND, SINK, ECHO, STATS)."""
    return start_tcp_app(module_group)


@pytest.fixture(scope="module")
def tcp_relay(module_relay_factory: Callable[..., Relay]) -> Relay:
    """A relay on its defaults but RELAY_TCP_PORTS (TCP tunnels are off without it)."""
    return module_relay_factory(RELAY_TCP_PORTS=free_port_range(RANGE_WIDTH))


@pytest.fixture(scope="module")
def tokens(tcp_relay: Relay) -> dict[str, str]:
    return make_users(tcp_relay.env, {name: [] for name in USERS})


@pytest.fixture(scope="module")
def token_of(tokens: dict[str, str]) -> Callable[[], str]:
    """A user's token that no other test of the module has had."""
    unused = list(tokens.values())
    return unused.pop


@pytest.fixture(scope="module")
def lt_tcp(
    module_group: ProcessGroup, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LtTcpLauncher]:
    yield LtTcpLauncher(module_group, tmp_path_factory.mktemp("lt-tcp-config"))


@pytest.fixture(scope="module")
def relay_url(tcp_relay: Relay) -> str:
    return f"http://localhost:{tcp_relay.port}"
