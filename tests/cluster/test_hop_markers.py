"""Hop markers are trusted only where nodes put them, and never under a public key.

A marker names the visitor's address; a node that believed one on a registration would let
whoever can sign pass as another address: take over that address's anonymous tunnel names
or slip past its per-address limit. Nodes forward only tunnel traffic and a client's tunnel
API calls, so only those may carry a marker; and a node does not start with the public
development key, with which anyone could sign."""

from __future__ import annotations

import subprocess

import pytest
from cluster_keys import mint
from harness.fake_client import FakeTunnelClient
from harness.processes import ROOT
from harness.relay import RELAY_COMMAND
from harness.waiting import unique_name

pytestmark = pytest.mark.timeout(120)

VICTIM_IP = "127.0.0.2"  # another anonymous owner (loopback, so no setup needed)


@pytest.mark.parametrize("how", ["flag", "environment"])
def test_a_cluster_node_refuses_to_start_with_the_development_key(cluster, how):
    env = cluster.env(RELAY_NODE_NAME="delta" if how == "environment" else "")
    del env["SECRET_KEY"]  # DEBUG=true: the relay would fall back to the development key
    args = [*RELAY_COMMAND, "--node-name", "delta"] if how == "flag" else RELAY_COMMAND
    try:
        done = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=30)
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"the node started with the development key and ran: {exc.stdout!r}")
    output = done.stdout + done.stderr
    assert done.returncode != 0, output
    assert "a cluster node needs a SECRET_KEY of its own" in output
    assert "SECRET_KEY_FILE" in output
    assert "Traceback" not in output
    assert "listening on" not in output
    assert cluster.query("SELECT name FROM tunnels_node WHERE name = 'delta'") == []


def _register_as(node, target: str, claimed_ip: str):
    """A registration from 127.0.0.1 carrying a marker (signed with the nodes' key, as
    anyone could with the development key) that names another address."""
    host = f"127.0.0.1:{node.port}"
    marker = mint("bravo", (claimed_ip, 1), f"GET {target}|{host}".encode())
    return node.get(target, headers=[("X-Tunnelsite-Hop", marker)])


def test_a_marker_on_a_registration_does_not_take_over_another_addresses_name(two_nodes, db_rows):
    alpha, _ = two_nodes
    victim = FakeTunnelClient(alpha, source=VICTIM_IP)
    try:
        (pool,) = victim.connect(1)
        answer = _register_as(alpha, f"/{victim.name}", VICTIM_IP)
        assert answer.status == 409, answer  # the name is another owner's
        assert not pool.is_closed(timeout=0.5)
        assert db_rows(victim.name) == [("alpha", True, "")]
        assert alpha.sockets(victim.name) == 1
    finally:
        victim.close()


@pytest.mark.parametrize("target", ["/?new", "/{name}"])
def test_a_marker_on_a_registration_does_not_change_whose_tunnel_it_is(cluster, two_nodes, target):
    _, bravo = two_nodes
    target = target.format(name=unique_name("claimed"))
    answer = _register_as(bravo, target, VICTIM_IP)
    assert answer.status == 200, answer
    name = answer.json()["id"]
    try:
        rows = cluster.query(
            "SELECT host(client_ip) FROM tunnels_tunnel WHERE subdomain = %s", name
        )
        assert rows == [("127.0.0.1",)]
    finally:
        assert bravo.request("DELETE", f"/api/tunnels/{name}").status == 204
