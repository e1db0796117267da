"""/metrics on two nodes (PostgreSQL, Redis): each says its node name, the node a visitor
reaches counts the forward to the owner, and the owner counts the tunnel and its request."""

from __future__ import annotations

import pytest
from harness.fake_client import FakeTunnelClient
from harness.http import build_request
from harness.prometheus import TOKEN, scrape, value
from harness.waiting import wait_until

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def nodes(cluster):  # type: ignore[no-untyped-def]
    # The token turns /metrics on (off by default); the rest are the cluster's settings.
    return (
        cluster.start("metrics-a", RELAY_METRICS_TOKEN=TOKEN),
        cluster.start("metrics-b", RELAY_METRICS_TOKEN=TOKEN),
    )


def test_a_forwarded_request_is_counted_on_both_nodes(nodes) -> None:  # type: ignore[no-untyped-def]
    alpha, bravo = nodes
    client = FakeTunnelClient(bravo)
    try:
        (pool,) = client.connect(1)
        before_a, before_b = scrape(alpha), scrape(bravo)

        def reached() -> bool:  # alpha learns the owner from Redis or its next heartbeat
            with alpha.visitor(client.name) as visitor:
                visitor.send(build_request("GET", "/m", alpha.host(client.name)))
                try:
                    pool.read_request(timeout=1.0)
                except TimeoutError:
                    return visitor.response().status == 200  # a 404: not yet
                pool.respond(200, b"metrics")
                return visitor.response().status == 200

        wait_until(reached, 10, "a request on alpha to reach bravo's tunnel")
        after_a, after_b = scrape(alpha), scrape(bravo)
    finally:
        client.close()
    assert value(after_a, "tunnelsite_tunnels", node="metrics-a") == 0
    assert value(after_b, "tunnelsite_tunnels", node="metrics-b", plan="default") == 1
    assert (
        value(after_a, "tunnelsite_cluster_forwards_total", kind="http")
        - value(before_a, "tunnelsite_cluster_forwards_total", kind="http")
        >= 1
    )
    assert value(after_b, "tunnelsite_cluster_forwards_total") == 0
    requests = value(after_b, "tunnelsite_requests_total", plan="default") - value(
        before_b, "tunnelsite_requests_total", plan="default"
    )
    assert requests == 1
    assert value(after_b, "tunnelsite_responses_total", node="metrics-b", **{"class": "2xx"}) == 1


def test_a_registration_that_reclaims_from_another_node_counts_once(nodes) -> None:  # type: ignore[no-untyped-def]
    """The owner registers its name on alpha, its client goes, and it registers the name
    again on bravo, which asks alpha to release it: one registration on each node (a
    registration is never forwarded, so none counts on both), and alpha's tunnel is the
    one closed tunnel."""
    alpha, bravo = nodes
    before_a, before_b = scrape(alpha), scrape(bravo)
    first = FakeTunnelClient(alpha)
    try:
        first.connect(1)
    finally:
        first.close()
    alpha.wait_for_sockets(first.name, 0)  # its client gone: the grace period
    second = FakeTunnelClient(bravo, name=first.name, source=first.source)
    try:
        after_a, after_b = scrape(alpha), scrape(bravo)
    finally:
        second.close()
    assert second.name == first.name
    for before, after in ((before_a, after_a), (before_b, after_b)):
        for outcome in ("ok", None):
            labels = {"outcome": outcome} if outcome else {}
            moved = value(after, "tunnelsite_registrations_total", **labels) - value(
                before, "tunnelsite_registrations_total", **labels
            )
            assert moved == 1, (outcome, moved)
    closed = "tunnelsite_tunnels_closed_total"
    assert value(after_a, closed, plan="default") - value(before_a, closed, plan="default") == 1
    assert value(after_b, closed) - value(before_b, closed) == 0
