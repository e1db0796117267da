"""Our lt's upgraded pool connections on two nodes: the registration answer sends the client
to the owner node's own URL (RELAY_NODE_URL, by default its advertised address), only the
owner accepts them, and visitors on any node reach them."""

from __future__ import annotations

import pytest
from harness.fake_client import PoolSocket, UpgradingTunnelClient
from harness.http import build_request
from harness.waiting import IO_TIMEOUT_S, wait_until

pytestmark = pytest.mark.timeout(120)

NODE_URL = "https://charlie.tunnels.example"
PROBE_S = 1.0


def reaches(node, name: str, pool: PoolSocket) -> bool:
    """One GET on `node` for the tunnel: True when it reached `pool` and came back, False
    when the node answered 404 itself (it does not know the owner yet)."""
    with node.visitor(name) as visitor:
        visitor.send(build_request("GET", "/via-alpha", node.host(name)))
        try:
            request = pool.read_request(timeout=PROBE_S)
        except TimeoutError:
            assert visitor.response().status == 404
            return False
        assert request.target == "/via-alpha"
        pool.respond(200, b"from bravo's pool connection")
        answer = visitor.response()
        return (answer.status, answer.body) == (200, b"from bravo's pool connection")


def test_the_pool_url_names_the_owner_node_and_only_it_accepts_the_upgrade(two_nodes):
    alpha, bravo = two_nodes
    client = UpgradingTunnelClient(bravo)
    try:
        assert client.pool_url == f"http://{bravo.advertise}/api/tunnels/{client.name}/pool"
        elsewhere = client.upgrade(port=alpha.port)
        assert elsewhere.status == 404
        assert "no tunnel called" in elsewhere.message() and "on this node" in elsewhere.message()
        pool = client.open()  # to the pool URL: bravo
        bravo.wait_for_sockets(client.name, 1)

        # A visitor on alpha reaches the connection on bravo (once alpha knows the owner).
        wait_until(lambda: reaches(alpha, client.name, pool), IO_TIMEOUT_S, "alpha to forward")
    finally:
        client.close()


def test_relay_node_url_is_the_base_of_the_pool_url(cluster):
    charlie = cluster.start("charlie", RELAY_NODE_URL=NODE_URL)
    client = UpgradingTunnelClient(charlie)
    try:
        assert client.pool_url == f"{NODE_URL}/api/tunnels/{client.name}/pool"
        assert client.upgrade(port=charlie.port).status == 101
    finally:
        client.close()
