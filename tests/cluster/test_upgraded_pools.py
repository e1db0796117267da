"""Our lt's upgraded pool connections on two nodes: the registration answer sends the client
to the owner node's own URL (RELAY_NODE_URL, by default its advertised address), only the
owner accepts them, and visitors on any node reach them."""

from __future__ import annotations

import threading

import pytest
from harness.fake_client import UpgradingTunnelClient
from harness.waiting import IO_TIMEOUT_S

pytestmark = pytest.mark.timeout(120)

NODE_URL = "https://charlie.tunnels.example"


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

        answers: list = []
        thread = threading.Thread(
            target=lambda: answers.append(alpha.get("/via-alpha", name=client.name)), daemon=True
        )
        thread.start()
        request = pool.read_request()
        pool.respond(200, b"from bravo's pool connection")
        thread.join(IO_TIMEOUT_S)
        assert request.target == "/via-alpha"
        assert (answers[0].status, answers[0].body) == (200, b"from bravo's pool connection")
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
