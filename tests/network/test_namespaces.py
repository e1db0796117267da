"""The harness itself: a relay and our lt in two namespaces reach each other only over the
veth pair, and nothing of a test's namespaces outlives it."""

from __future__ import annotations

import pytest
from harness.netns import IP, NETNS_ETC, Network, NetworkRun, run
from harness.waiting import IO_TIMEOUT_S


def test_a_visitor_reaches_the_app_through_a_relay_in_another_namespace(net: NetworkRun) -> None:
    relay = net.relay(tls=False)
    app = net.app()
    lt = net.lt(relay, app)
    answer = relay.get("/hello", name=lt.name)
    assert answer.status == 200, answer
    # The app is not reachable from the relay's namespace but through the tunnel.
    with pytest.raises(OSError):
        net.network.relay.connect_in("127.0.0.1", app.port, IO_TIMEOUT_S).close()


def test_the_namespaces_are_gone_after_close() -> None:
    network = Network()
    names = [network.relay.name, network.client.name]
    assert set(names) <= set(run([IP, "netns", "list"]).split())
    network.close()
    listed = run([IP, "netns", "list"]).split()
    assert not set(names) & set(listed)
    assert not [name for name in names if (NETNS_ETC / name).exists()]
