"""The pieces of clustering that need no processes: hop markers, addresses, the directory."""

from __future__ import annotations

import asyncio

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.test import override_settings

from relay.cluster.hop import ClusterGate, binding, sign, verify
from relay.cluster.node import Cluster, parse_address
from relay.pool.registry import Registry
from relay.protocol import HOP_HEADER, HOP_SCOPE_KEY

HOST = b"quiet-fox-3f9a.localhost:8080"
# tunnelsite/settings.py's DEVELOPMENT_SECRET_KEY, what a node without SECRET_KEY used.
DEVELOPMENT_KEY = "dev-only-insecure-key-change-me-for-production-use-0123456789"
SITE = b"localhost:8080"  # the bare domain: registration, the API, the admin


@pytest.fixture(autouse=True)
def _a_node_key():
    """Nodes run with a key of their own (runrelay refuses the development key)."""
    with override_settings(SECRET_KEY="unit-tests-node-key-0123456789-abcdefghijklmnopqrstuv"):
        yield


def test_a_signed_hop_marker_verifies_and_names_the_visitor():
    marker = sign("alpha", ("203.0.113.9", 5555), HOST, now=1000)
    assert verify(marker, HOST, now=1010) == ("203.0.113.9", 5555)


def test_a_hop_marker_for_another_host_or_tampered_or_stale_does_not_verify():
    marker = sign("alpha", ("203.0.113.9", 5555), HOST, now=1000)
    assert verify(marker, b"other-name.localhost:8080", now=1000) is None
    assert verify(marker.replace(b"203.0.113.9", b"198.51.100.1"), HOST, now=1000) is None
    assert verify(marker, HOST, now=1000 + 61) is None
    assert verify(b"1 forged - 0 nope", HOST, now=1) is None
    assert verify(b"\xff garbage", HOST) is None


def test_a_hop_marker_signed_with_another_secret_does_not_verify():
    with override_settings(SECRET_KEY="another-secret-key-for-another-cluster-0123456789"):
        marker = sign("alpha", ("203.0.113.9", 5555), HOST, now=1000)
    assert verify(marker, HOST, now=1000) is None


GET_ROOT = b"GET /|" + HOST  # relay.cluster.hop.binding of the scope _through_gate builds


def test_a_marker_for_one_request_does_not_vouch_for_another():
    scope = {"method": "DELETE", "path": "/api/tunnels/x", "raw_path": b"/api/tunnels/x"}
    marker = sign("bravo", ("192.0.2.7", 1), GET_ROOT)
    assert verify(marker, binding(scope, HOST)) is None
    assert verify(marker, GET_ROOT) == ("192.0.2.7", 1)


def _through_gate(
    headers: list[tuple[bytes, bytes]], method: str = "GET", path: str = "/", kind: str = "http"
) -> dict:
    seen: dict = {}

    async def app(scope, receive, send) -> None:
        seen.update(scope)

    scope = {
        "type": kind,
        "method": method,
        "path": path,
        "query_string": b"new" if path == "/?new" else b"",
        "headers": headers,
        "client": ("10.0.0.12", 40000),
    }
    if path == "/?new":
        scope["path"] = "/"
    asyncio.run(ClusterGate(app, lambda: (200, {}))(scope, None, None))
    return seen


def test_the_gate_believes_a_valid_marker_and_strips_it():
    marker = sign("bravo", ("192.0.2.7", 1), GET_ROOT)
    scope = _through_gate([(b"host", HOST), (HOP_HEADER, marker)])
    assert scope[HOP_SCOPE_KEY] is True
    assert scope["client"] == ("192.0.2.7", 1)
    assert scope["headers"] == [(b"host", HOST)]


def test_the_gate_strips_a_forged_marker_without_believing_it():
    scope = _through_gate([(b"host", HOST), (HOP_HEADER, b"1 x 1.2.3.4 1 bad")])
    assert HOP_SCOPE_KEY not in scope
    assert scope["client"] == ("10.0.0.12", 40000)
    assert scope["headers"] == [(b"host", HOST)]


def test_two_markers_are_both_disbelieved():
    good = sign("bravo", ("192.0.2.7", 1), GET_ROOT)
    scope = _through_gate([(b"host", HOST), (HOP_HEADER, good), (HOP_HEADER, good)])
    assert HOP_SCOPE_KEY not in scope


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("10.0.0.5:8080", ("10.0.0.5", 8080)),
        ("[::1]:80", ("::1", 80)),
        ("relay-a:1", ("relay-a", 1)),
    ],
)
def test_advertised_addresses_are_host_and_port(value, expected):
    assert parse_address(value) == expected


@pytest.mark.parametrize("value", ["10.0.0.5", ":80", "host:0", "host:http", "0.0.0.0:8080"])
def test_a_malformed_advertised_address_names_the_setting(value):
    with pytest.raises(ImproperlyConfigured, match="RELAY_ADVERTISE"):
        parse_address(value)


def test_ownership_news_beats_an_older_snapshot_and_closes_only_the_owner_it_names():
    async def main() -> None:
        cluster = Cluster(Registry(), "alpha", "127.0.0.1:1")
        cluster._install({"a-name": "127.0.0.1:2"}, 0.0)
        assert cluster.route("a-name") == "127.0.0.1:2"
        news = {"type": "tunnel.owner", "name": "b-name", "node": "bravo"}
        cluster.note_owner({**news, "address": "127.0.0.1:2", "was": "127.0.0.1:2"})
        cluster._install({}, 0.0)  # a snapshot taken before bravo registered it
        assert cluster.route("b-name") == "127.0.0.1:2"
        # charlie closing a name bravo now owns does not hide bravo's
        cluster.note_owner({**news, "node": "charlie", "address": None, "was": "127.0.0.1:3"})
        assert cluster.route("b-name") == "127.0.0.1:2"
        cluster.note_owner({**news, "address": None, "was": "127.0.0.1:2"})
        assert cluster.route("b-name") is None
        cluster.note_owner({**news, "node": "alpha", "address": "x:1"})  # our own news
        assert cluster.route("b-name") is None

    asyncio.run(main())


def test_a_marker_signed_with_the_development_key_is_never_believed():
    """Anyone can sign with the key published in settings.py, even a server started some
    other way than runrelay (which refuses it on a node)."""
    with override_settings(SECRET_KEY=DEVELOPMENT_KEY):
        marker = sign("bravo", ("192.0.2.7", 1), GET_ROOT)
        assert verify(marker, GET_ROOT) is None
        scope = _through_gate([(b"host", HOST), (HOP_HEADER, marker)])
    assert HOP_SCOPE_KEY not in scope
    assert scope["client"] == ("10.0.0.12", 40000)


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/?new"),  # registration: nodes never forward it
        ("GET", "/quiet-fox-3f9a"),
        ("GET", "/api/status"),
        ("POST", "/api/tunnels/quiet-fox-3f9a"),  # not a method of the forwarded API
        ("GET", "/admin/"),
    ],
)
def test_the_gate_drops_a_valid_marker_on_what_nodes_never_forward(method, path):
    scope = {"method": method, "raw_path": path.encode()}
    marker = sign("bravo", ("192.0.2.7", 1), binding(scope, SITE))
    scope = _through_gate([(b"host", SITE), (HOP_HEADER, marker)], method, path)
    assert HOP_SCOPE_KEY not in scope
    assert scope["client"] == ("10.0.0.12", 40000)
    assert scope["headers"] == [(b"host", SITE)]


@pytest.mark.parametrize(
    ("method", "path", "host"),
    [
        ("DELETE", "/api/tunnels/quiet-fox-3f9a", SITE),  # relay/cluster/node.py forward_api
        ("GET", "/api/tunnels/quiet-fox-3f9a/status", SITE),
        ("POST", "/upload", HOST),  # a visitor's request for a tunnel
    ],
)
def test_the_gate_believes_a_valid_marker_on_what_nodes_forward(method, path, host):
    scope = {"method": method, "raw_path": path.encode()}
    marker = sign("bravo", ("192.0.2.7", 1), binding(scope, host))
    scope = _through_gate([(b"host", host), (HOP_HEADER, marker)], method, path)
    assert scope[HOP_SCOPE_KEY] is True
    assert scope["client"] == ("192.0.2.7", 1)
