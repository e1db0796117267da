"""The harness itself: a relay and our lt in two namespaces reach each other only over the
veth pair, and nothing of a test's namespaces outlives it."""

from __future__ import annotations

from harness.netns import CLIENT_ADDRESS, IP, Network, NetworkRun, run


def test_a_visitor_reaches_the_app_through_a_relay_in_another_namespace(net: NetworkRun) -> None:
    relay = net.relay(tls=False)
    app = net.app()
    lt = net.lt(relay, app)
    answer = relay.get("/hello", name=lt.name)
    assert answer.status == 200, answer
    # The client namespace's app is not on the relay's loopback: the tunnel carried it.
    assert net.network.client.address == CLIENT_ADDRESS


def test_the_namespaces_are_gone_after_close() -> None:
    network = Network()
    names = [network.relay.name, network.client.name]
    assert set(names) <= set(run([IP, "netns", "list"]).split())
    network.close()
    listed = run([IP, "netns", "list"]).split()
    assert not set(names) & set(listed)
