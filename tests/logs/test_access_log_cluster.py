"""Access lines on a cluster: a request forwarded from the node a visitor reached to the
tunnel's owner is one access line, written by the node the visitor reached
(relay/edge/routing.py), not a second one on the owner with a node for visitor. And the
session's secret scan reads the nodes' output (harness/log_capture.py)."""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterator

import pytest
from harness import log_capture
from harness.fake_client import FakeTunnelClient
from harness.http import build_request
from harness.nodes import Node, fresh_nodes
from harness.waiting import wait_until

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def nodes() -> Iterator[tuple[Node, Node]]:
    with fresh_nodes() as made:
        yield (
            made.start("alpha", RELAY_ACCESS_LOG="true"),
            made.start("bravo", RELAY_ACCESS_LOG="true"),
        )


def access_lines(node, tunnel: str) -> list[re.Match[str]]:
    pattern = re.compile(rf'relay\.access: (\S+) {re.escape(tunnel)} "GET (\S+)" (\d+) ')
    return [m for m in map(pattern.search, node.process.output().splitlines()) if m]


def test_a_forwarded_request_is_one_access_line_on_the_node_the_visitor_reached(nodes):
    alpha, bravo = nodes
    client = FakeTunnelClient(bravo)  # bravo owns the tunnel
    try:
        (pool,) = client.connect(1)
        # alpha learns the owner from bravo's announcement, a few ms after the registration
        # (relay/cluster/node.py): asked through its API, which writes no tunnel line.
        wait_until(
            lambda: alpha.get(f"/api/tunnels/{client.name}/status").status == 200,
            10,
            "alpha to learn the tunnel's owner",
        )
        for node, path in ((alpha, "/through-alpha"), (bravo, "/straight-to-bravo")):
            with node.visitor(client.name) as visitor:
                visitor.send(build_request("GET", path, node.host(client.name)))
                assert pool.read_request().target == path
                pool.respond(200, b"ok")
                assert visitor.response().status == 200
            wait_until(
                lambda node=node, path=path: any(
                    m[2] == path for m in access_lines(node, client.name)
                ),
                10,
                f"the access line of {path} on node {node.name}",
            )
        # bravo wrote its direct request's line after the forwarded request was over: a line
        # of the forwarded one would be there by now.
        on_alpha = [(m[1], m[2], m[3]) for m in access_lines(alpha, client.name)]
        on_bravo = [(m[1], m[2], m[3]) for m in access_lines(bravo, client.name)]
        assert on_alpha == [("127.0.0.1", "/through-alpha", "200")]
        assert on_bravo == [("127.0.0.1", "/straight-to-bravo", "200")]
    finally:
        client.close()


def test_the_session_scan_reads_a_cluster_nodes_output(nodes):
    alpha, _ = nodes
    planted = f"planted-{secrets.token_hex(16)}"  # not remembered: the session check passes
    with alpha.visitor("no-such-tunnel") as visitor:
        visitor.send(build_request("GET", f"/{planted}", alpha.host("no-such-tunnel")))
        visitor.response()
    wait_until(lambda: planted in alpha.process.output(), 10, "the planted secret's line")
    found = log_capture.leaks(log_capture.checked_files(), {planted: "a planted secret"})
    assert [leak.file.name.split("-")[1:3] for leak in found] == [["relay", "node"]]
