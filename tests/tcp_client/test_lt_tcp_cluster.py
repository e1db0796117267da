"""`lt tcp` on a cluster (tunnelsite_client/tcp_node.py): a TCP tunnel's port is owned by the node
that
registered it, so lt registers again at that node (named by the answer's pool_url), not at
--host (the balancer), and falls back to --host only when the node is gone. Two relays'
TCP sides played by the test (fake_relay.py): the one at --host, and the owner node."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from harness.lt_process import LtProcess
from harness.waiting import wait_until

from tunnelsite_client.limits import TCP_SPARE_CONNECTIONS
from tunnelsite_client.tcp_node import NODE_GONE

from .fake_relay import POOL_SECRET, TCP_PORT, FakeTcpRelay
from .test_lt_tcp_process import lt_tcp


@pytest.fixture
def node() -> Iterator[FakeTcpRelay]:
    fake = FakeTcpRelay().start()
    fake.pool_base = fake.url  # its own RELAY_NODE_URL
    try:
        yield fake
    finally:
        fake.stop()


@pytest.fixture
def relay() -> Iterator[FakeTcpRelay]:
    fake = FakeTcpRelay().start()
    try:
        yield fake
    finally:
        fake.stop()


def test_lt_tcp_registers_again_at_the_node_that_owns_its_port_then_at_host_once_it_is_gone(
    run_lt: Callable[..., LtProcess], relay: FakeTcpRelay, node: FakeTcpRelay
) -> None:
    relay.pool_base = node.url  # the balancer sent the registration to `node`
    lt = lt_tcp(run_lt, relay)
    assert lt.url() == f"tcp://127.0.0.1:{TCP_PORT}"
    node.wait_for_pool(TCP_SPARE_CONNECTIONS)
    assert relay.pool == []

    # The node lost the tunnel's pool (its connections dropped, the upgrade answered 404):
    # lt registers again, at the node, with the tunnel's name and pool secret.
    node.pool_refusal = 404
    node.drop_pool()
    wait_until(lambda: node.paths, message="a registration at the node")
    assert node.paths == ["/tcpa1b2c3"]
    assert node.heads[0]["tunnelsite-pool-secret"] == POOL_SECRET
    assert len(relay.paths) == 1, "nothing more asked of --host"
    node.wait_for_pool(TCP_SPARE_CONNECTIONS)

    # The node is gone: lt says the port changes and registers at --host.
    relay.pool_base = None
    node.stop()
    lt.wait_for_line(f"{NODE_GONE}$")
    wait_until(lambda: len(relay.paths) == 2, message="a registration at --host")
    assert relay.paths[1] == "/tcpa1b2c3"
    relay.wait_for_pool(TCP_SPARE_CONNECTIONS)
