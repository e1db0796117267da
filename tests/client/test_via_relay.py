"""`via_relay`: a tunnel reached at the relay's own address, by its Host header."""

from __future__ import annotations

import pytest

from tunnelsite_client import ClientTunnel, SyncTunnel, TunnelOptions, via_relay


def opened(host: str, url: str) -> ClientTunnel:
    tunnel = ClientTunnel(TunnelOptions(port=3000, host=host))
    tunnel.status.url = url  # what registration sets
    return tunnel


def test_it_aims_at_the_relay_and_names_the_tunnel_in_the_host_header() -> None:
    tunnel = opened("http://localhost:8080", "http://quiet-fox.localhost:8080")
    assert via_relay(tunnel, "/a?b=1") == (
        "http://localhost:8080/a?b=1",
        {"Host": "quiet-fox.localhost:8080"},
    )


def test_it_leaves_the_token_in_the_relay_url_out() -> None:
    tunnel = opened("https://lt_secret@tunnels.example", "https://my-app.tunnels.example")
    url, headers = via_relay(tunnel, "health")
    assert url == "https://tunnels.example/health"
    assert headers == {"Host": "my-app.tunnels.example"}


def test_it_keeps_an_ipv6_relay_address_bracketed() -> None:
    tunnel = opened("http://[::1]:8080", "http://name.localhost:8080")
    assert via_relay(tunnel)[0] == "http://[::1]:8080/"


def test_a_tunnel_that_is_not_open_is_an_error() -> None:
    with pytest.raises(RuntimeError, match="not open"):
        via_relay(SyncTunnel(port=3000))
