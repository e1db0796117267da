"""An operator's Disconnect and Suspend made on one node hold on the other: the admin's
message reaches every node over Redis (tunnels/control.py), and registrations of suspended
names are refused from the shared database. The tunnels here are held on bravo; the admin
runs as a separate process with the cluster's settings, as alpha's admin would."""

from __future__ import annotations

from harness.fake_client import FakeTunnelClient
from harness.http import Answer
from harness.relay import Relay
from harness.waiting import unique_name, wait_until

from relay.protocol import REFUSAL_DISCONNECTED, REFUSAL_HEADER, REFUSAL_SUSPENDED

REASON = "reported by a bank"


def register(node: Relay, name: str, source: str) -> Answer:
    return node.get(f"/{name}", source=source)


def test_a_disconnect_on_one_node_keeps_the_name_and_its_owner_off_on_both(cluster, two_nodes):
    alpha, bravo = two_nodes
    client = FakeTunnelClient(bravo)
    try:
        (pool,) = client.connect(1)
        cluster.manage(
            "shell",
            "-c",
            f"from tunnels import control; assert control.disconnect([{client.name!r}])",
        )
        assert pool.is_closed(timeout=2.0)
        for node in (alpha, bravo):
            for name in (client.name, unique_name("other")):  # the name; its owner's others
                refused = wait_until(
                    lambda node=node, name=name: (
                        (answer := register(node, name, client.source)).status == 403 and answer
                    ),
                    2.0,
                    f"{node.name} to refuse {name}",
                )
                assert refused.header(REFUSAL_HEADER) == REFUSAL_DISCONNECTED
                message = refused.json()["message"]
                if name == client.name:
                    assert message.startswith(f"{client.name} was closed by the")
                else:  # another name of the same owner waits, and says for which tunnel
                    assert message.startswith(f"{name} cannot be registered for another")
                    assert f"closed your tunnel {client.name}" in message
        elsewhere = FakeTunnelClient(alpha)  # another owner is not held
        elsewhere.close()
    finally:
        client.close()


def test_a_suspension_on_one_node_holds_on_both_until_lifted(cluster, two_nodes):
    alpha, bravo = two_nodes
    client = FakeTunnelClient(bravo)
    name = client.name
    try:
        (pool,) = client.connect(1)
        cluster.manage(
            "shell",
            "-c",
            f"from tunnels import suspensions; suspensions.suspend_names([{name!r}], {REASON!r})",
        )
        assert pool.is_closed(timeout=2.0)
        for node in (alpha, bravo):
            wait_until(
                lambda node=node: node.get("/", name=name).status == 403, 2.0, f"{node.name}'s page"
            )
            assert REASON in node.get("/", name=name).body.decode()
            refused = register(node, name, "127.0.0.1")
            assert refused.status == 403 and refused.header(REFUSAL_HEADER) == REFUSAL_SUSPENDED
            assert refused.json()["message"].endswith(
                f"suspended by the relay's operator: {REASON}"
            )
        cluster.manage(
            "shell",
            "-c",
            "from tunnels import suspensions; from tunnels.models import Suspension; "
            f"suspensions.lift(Suspension.objects.filter(name={name!r}))",
        )
        wait_until(lambda: alpha.get("/", name=name).status == 404, 2.0, "the page to go")
        again = FakeTunnelClient(alpha, name=name)
        again.close()
    finally:
        client.close()
