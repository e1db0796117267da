"""Where `lt tcp` registers again (tunnelsite_client/tcp_node.py): at the node its last answer named
when that is not --host's base, else at --host; HTTP tunnels always at --host."""

from __future__ import annotations

import pytest

from tunnelsite_client.registration import Registration
from tunnelsite_client.tcp_node import owner_node

POOL_PATH = "/api/tunnels/tcpa1b2c3/pool"


def answer(pool_url: str | None, tcp_port: int | None = 41000) -> Registration:
    return Registration(
        "tcpa1b2c3", "tcp://relay.example:41000", 0, 10, "relay.example", None, pool_url,
        "5" * 64, tcp_port,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("host", "pool_url", "node"),
    [
        ("https://relay.example", f"https://node-a.relay.example{POOL_PATH}", "https://node-a.relay.example"),
        ("https://relay.example", f"https://node-a.relay.example:8443{POOL_PATH}", "https://node-a.relay.example:8443"),
        ("https://relay.example/", f"https://relay.example{POOL_PATH}", None),
        ("https://Relay.Example", f"https://relay.example{POOL_PATH}", None),
        ("https://user:pw@relay.example", f"https://relay.example{POOL_PATH}", None),
        ("http://relay.example", f"https://relay.example{POOL_PATH}", None),
        ("https://relay.example:443", f"https://relay.example{POOL_PATH}", None),
        ("http://127.0.0.1:8000", f"http://127.0.0.1:8001{POOL_PATH}", "http://127.0.0.1:8001"),
        # The token goes only where --host's user would send it: its domain, https or loopback.
        ("https://relay.example", f"https://evil.example{POOL_PATH}", None),
        ("https://relay.example", f"https://relay.example.evil.example{POOL_PATH}", None),
        ("https://relay.example", f"https://xrelay.example{POOL_PATH}", None),
        ("https://relay.example", f"http://node-a.relay.example{POOL_PATH}", None),
        ("http://localhost:8000", f"http://10.0.0.5:8000{POOL_PATH}", None),
    ],
)  # fmt: skip
def test_a_tcp_tunnel_registers_again_at_the_node_its_answer_named(
    host: str, pool_url: str, node: str | None
) -> None:
    assert owner_node(host, answer(pool_url)) == node


def test_http_tunnels_raw_pools_and_first_registrations_register_at_host() -> None:
    other = f"https://node-a.relay.example{POOL_PATH}"
    assert owner_node("https://relay.example", answer(other, tcp_port=None)) is None
    assert owner_node("https://relay.example", answer(None)) is None
    assert owner_node("https://relay.example", None) is None
