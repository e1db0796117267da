"""X-Forwarded-* from visitors are believed only when the peer is a trusted proxy.

Two relays: one trusts 127.0.0.2 (RELAY_TRUSTED_PROXIES), one trusts nobody. A visitor
connects from 127.0.0.1 or 127.0.0.2 and sends its own X-Forwarded-For/-Proto; the test reads
what the tunnel receives, and which address registration takes as the client's.
"""

from __future__ import annotations

import pytest
from harness.fake_client import FakeTunnelClient, PoolRequest
from harness.http import Visitor
from harness.relay import Relay

PROXY = "127.0.0.2"
FORGED = [("X-Forwarded-For", "6.6.6.6, 7.7.7.7"), ("X-Forwarded-Proto", "https")]


@pytest.fixture(scope="module")
def trusting_relay(module_relay_factory) -> Relay:
    return module_relay_factory(RELAY_TRUSTED_PROXIES=f"{PROXY}/32")


@pytest.fixture(scope="module")
def distrusting_relay(module_relay_factory) -> Relay:
    return module_relay_factory()


def forwarded_request(relay: Relay, source: str, headers: list[tuple[str, str]]) -> PoolRequest:
    client = FakeTunnelClient(relay)
    try:
        (pool_socket,) = client.connect(1)
        with Visitor(relay.port, relay.host(client.name), source=source) as visitor:
            extra = "".join(f"{name}: {value}\r\n" for name, value in headers)
            visitor.send(f"GET /who HTTP/1.1\r\nHost: {visitor.host}\r\n{extra}\r\n".encode())
            request = pool_socket.read_request()
            pool_socket.respond(200, b"ok")
            assert visitor.response().status == 200
        return request
    finally:
        client.close()


def forwarded_values(request: PoolRequest, name: str) -> list[str]:
    return [value for key, value in request.headers if key == name]


def test_an_untrusted_peer_cannot_forge_its_address_or_scheme(distrusting_relay):
    request = forwarded_request(distrusting_relay, PROXY, FORGED)

    assert forwarded_values(request, "x-forwarded-for") == [PROXY]
    assert forwarded_values(request, "x-forwarded-proto") == ["http"]


def test_a_peer_not_named_in_trusted_proxies_cannot_forge_either(trusting_relay):
    request = forwarded_request(trusting_relay, "127.0.0.1", FORGED)

    assert forwarded_values(request, "x-forwarded-for") == ["127.0.0.1"]
    assert forwarded_values(request, "x-forwarded-proto") == ["http"]


def test_a_trusted_proxy_s_chain_is_kept_and_extended_with_the_proxy_itself(trusting_relay):
    request = forwarded_request(trusting_relay, PROXY, FORGED)

    assert forwarded_values(request, "x-forwarded-for") == [f"6.6.6.6, 7.7.7.7, {PROXY}"]
    assert forwarded_values(request, "x-forwarded-proto") == ["https"]


def test_a_trusted_proxy_s_chain_split_over_two_header_lines_is_read_as_one(trusting_relay):
    headers = [("X-Forwarded-For", "6.6.6.6"), ("X-Forwarded-For", "7.7.7.7")]

    request = forwarded_request(trusting_relay, PROXY, headers)

    assert forwarded_values(request, "x-forwarded-for") == [f"6.6.6.6, 7.7.7.7, {PROXY}"]


def test_a_trusted_proxy_cannot_set_a_scheme_other_than_http_or_https(trusting_relay):
    request = forwarded_request(trusting_relay, PROXY, [("X-Forwarded-Proto", "javascript")])

    assert forwarded_values(request, "x-forwarded-proto") == ["http"]


def register_through(relay: Relay, source: str, forwarded_for: str) -> FakeTunnelClient:
    """Register as `lt` would, from `source`, claiming to forward for `forwarded_for`."""
    with relay.visitor(source=source) as visitor:
        answer = visitor.request("GET", "/?new", [("X-Forwarded-For", forwarded_for)])
    assert answer.status == 200, answer
    client = FakeTunnelClient.__new__(FakeTunnelClient)
    info = answer.json()
    client.relay, client.name, client.port = relay, info["id"], info["port"]
    client.max_conn_count, client.source, client.sockets = info["max_conn_count"], source, []
    return client


def test_registration_ignores_a_forged_address_from_an_untrusted_peer(distrusting_relay):
    client = register_through(distrusting_relay, "127.0.0.1", "127.0.0.3")
    try:
        # The tunnel belongs to the real peer: its pool sockets are welcome, 127.0.0.3's not.
        assert client.open(source="127.0.0.3").is_closed(timeout=5)
        client.connect(1, source="127.0.0.1")
    finally:
        client.close()


def test_registration_through_a_trusted_proxy_belongs_to_the_forwarded_address(trusting_relay):
    client = register_through(trusting_relay, PROXY, "127.0.0.3")
    try:
        assert client.open(source=PROXY).is_closed(timeout=5)
        client.connect(1, source="127.0.0.3")
    finally:
        client.close()


def test_a_garbled_forwarded_address_leaves_the_tunnel_to_the_proxy(trusting_relay):
    client = register_through(trusting_relay, PROXY, "127.0.0.3, not-an-address")
    try:
        client.connect(1, source=PROXY)
    finally:
        client.close()


# Every header an app or framework may read as "the client's address": the visitor's own
# values never reach the app; X-Real-IP carries the address the relay saw.
CLIENT_ADDRESS_HEADERS = [
    ("X-Real-IP", "6.6.6.6"),
    ("Forwarded", "for=6.6.6.6;proto=https"),
    ("X-Client-IP", "6.6.6.6"),
    ("True-Client-IP", "6.6.6.6"),
    ("CF-Connecting-IP", "6.6.6.6"),
]


def test_a_visitor_cannot_name_its_own_address_in_any_client_address_header(distrusting_relay):
    request = forwarded_request(distrusting_relay, "127.0.0.1", CLIENT_ADDRESS_HEADERS)

    assert forwarded_values(request, "x-real-ip") == ["127.0.0.1"]
    for name in ("forwarded", "x-client-ip", "true-client-ip", "cf-connecting-ip"):
        assert forwarded_values(request, name) == [], name
    assert not any("6.6.6.6" in value for _, value in request.headers), request.headers


def test_x_real_ip_is_the_visitor_a_trusted_proxy_names(trusting_relay):
    headers = [("X-Forwarded-For", "203.0.113.9"), ("X-Real-IP", "6.6.6.6")]
    request = forwarded_request(trusting_relay, PROXY, headers)

    assert forwarded_values(request, "x-real-ip") == ["203.0.113.9"]
    assert forwarded_values(request, "x-forwarded-for") == [f"203.0.113.9, {PROXY}"]
