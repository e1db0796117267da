"""relay.headers, sans-IO: scopes and header lists in, header lists and addresses out.

No sockets and no relay: each test hands the functions what Daphne and h11 would (lowercase
header names, bytes values, a `client` pair) and reads what the tunnel client or the visitor
would receive. Hypothesis looks for whole classes of bugs: a hop-by-hop or Connection-named
header that survives, a forged X-Forwarded-For believed from an untrusted peer, a cookie whose
Domain still reaches past the tunnel's own host.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from django.conf import settings
from django.test import override_settings
from hypothesis import assume, given
from hypothesis import strategies as st

from relay.headers import (
    address_key,
    client_ip,
    host_only_cookie,
    normal_ip,
    request_headers,
    response_headers,
)
from relay.protocol import CLIENT_ADDRESS_HEADERS, FORWARDED_HEADERS, HOP_BY_HOP

Headers = list[tuple[bytes, bytes]]
PROXY = "10.0.0.1"
TRUSTED = [ipaddress.ip_network("10.0.0.0/24")]
# What the relay itself appends to every request, in this order (x-forwarded-host with a Host).
RELAY_SET = [b"x-forwarded-for", b"x-real-ip", b"x-forwarded-proto", b"x-forwarded-host"]
HOP_MARKER = b"x-tunnelsite-hop"


def scope(headers: Headers, peer: str = "203.0.113.7") -> dict[str, Any]:
    return {"type": "http", "headers": headers, "client": (peer, 50000)}


@contextmanager
def trusting(*networks: str) -> Iterator[None]:
    with override_settings(RELAY_TRUSTED_PROXIES=[ipaddress.ip_network(n) for n in networks]):
        yield


def names(headers: Headers) -> list[bytes]:
    return [name for name, _ in headers]


def values(headers: Headers, name: bytes) -> list[bytes]:
    return [value for key, value in headers if key == name]


# --- strategies ---------------------------------------------------------------------------------
TOKEN = st.text("abcdefghijklmnopqrstuvwxyz0123456789-", min_size=1, max_size=12)
SPECIAL = sorted(
    HOP_BY_HOP | FORWARDED_HEADERS | CLIENT_ADDRESS_HEADERS | {b"expect", HOP_MARKER, b"host"}
)
HEADER_NAME = st.one_of(st.sampled_from(SPECIAL), TOKEN.map(str.encode))
HEADER_VALUE = st.binary(max_size=30).map(lambda v: v.replace(b"\r", b"").replace(b"\n", b""))


@st.composite
def connection_value(draw: st.DrawFn) -> bytes:
    """A Connection header as visitors and apps write it: tokens, any case, odd spacing."""
    tokens = draw(st.lists(st.one_of(st.sampled_from(SPECIAL), TOKEN.map(str.encode)), max_size=4))
    cased = [draw(st.sampled_from([t, t.upper(), t.title()])) for t in tokens]
    spaces = draw(st.sampled_from([b",", b", ", b" ,  ", b",,"]))
    return spaces.join(cased)


@st.composite
def header_list(draw: st.DrawFn) -> Headers:
    headers = draw(st.lists(st.tuples(HEADER_NAME, HEADER_VALUE), max_size=12))
    for _ in range(draw(st.integers(0, 2))):
        index = draw(st.integers(0, len(headers)))
        headers.insert(index, (b"connection", draw(connection_value())))
    return headers


def connection_named(headers: Headers) -> set[bytes]:
    return {
        token.strip().lower()
        for name, value in headers
        if name == b"connection"
        for token in value.split(b",")
        if token.strip()
    }


IPV4 = st.ip_addresses(v=4).map(str)
IPV6 = st.ip_addresses(v=6).map(str)
ADDRESS = st.one_of(IPV4, IPV6)


# --- requests: what reaches the tunnel client -----------------------------------------------------
@given(header_list(), ADDRESS)
def test_no_hop_by_hop_or_connection_named_header_reaches_the_tunnel(
    headers: Headers, peer: str
) -> None:
    out, _, _ = request_headers(scope(headers, peer))
    kept = out[: len(out) - sum(1 for n in names(out) if n in RELAY_SET)]
    dropped = HOP_BY_HOP | connection_named(headers) | {b"expect", HOP_MARKER}
    dropped |= FORWARDED_HEADERS | CLIENT_ADDRESS_HEADERS
    assert not set(names(kept)) & dropped


@given(header_list(), ADDRESS)
def test_the_visitors_other_headers_pass_in_order_and_the_relay_adds_its_own_once_at_the_end(
    headers: Headers, peer: str
) -> None:
    out, _, _ = request_headers(scope(headers, peer))
    dropped = HOP_BY_HOP | connection_named(headers) | {b"expect", HOP_MARKER}
    dropped |= FORWARDED_HEADERS | CLIENT_ADDRESS_HEADERS
    passed = [(n, v) for n, v in headers if n not in dropped]
    host = (values(passed, b"host") or [b""])[-1]
    assert out[: len(passed)] == passed
    assert names(out[len(passed) :]) == (RELAY_SET if host else RELAY_SET[:3])
    if host:
        assert values(out, b"x-forwarded-host") == [host]


@given(header_list(), st.lists(IPV4, max_size=3), ADDRESS)
def test_an_untrusted_peer_cannot_forge_its_address_or_scheme(
    headers: Headers, forged: list[str], peer: str
) -> None:
    headers = headers + [(b"x-forwarded-for", ", ".join(forged).encode())]
    headers.append((b"x-forwarded-proto", b"https"))
    with trusting():
        out, _, _ = request_headers(scope(headers, peer))
        assert client_ip(scope(headers, peer)) == normal_ip(peer)
    assert values(out, b"x-forwarded-for") == [peer.encode()]
    assert values(out, b"x-real-ip") == [normal_ip(peer).encode()]
    assert values(out, b"x-forwarded-proto") == [settings.RELAY_PUBLIC_SCHEME.encode()]


def test_a_trusted_proxy_extends_the_chain_and_names_the_visitor() -> None:
    headers = [
        (b"host", b"app.localhost"),
        (b"x-forwarded-for", b"198.51.100.9, 10.0.0.7"),
        (b"x-forwarded-proto", b"https"),
    ]
    with trusting("10.0.0.0/24"):
        out, _, _ = request_headers(scope(headers, PROXY))
        assert client_ip(scope(headers, PROXY)) == "198.51.100.9"
    assert values(out, b"x-forwarded-for") == [b"198.51.100.9, 10.0.0.7, 10.0.0.1"]
    assert values(out, b"x-real-ip") == [b"198.51.100.9"]
    assert values(out, b"x-forwarded-proto") == [b"https"]
    assert values(out, b"x-forwarded-host") == [b"app.localhost"]


def test_several_x_forwarded_for_lines_from_a_trusted_proxy_are_one_list() -> None:
    headers = [(b"x-forwarded-for", b"192.0.2.1"), (b"x-forwarded-for", b"198.51.100.2")]
    with trusting("10.0.0.0/24"):
        out, _, _ = request_headers(scope(headers, PROXY))
        assert client_ip(scope(headers, PROXY)) == "198.51.100.2"
    assert values(out, b"x-forwarded-for") == [b"192.0.2.1, 198.51.100.2, 10.0.0.1"]


@pytest.mark.parametrize("proto", [b"ftp", b"HTTPS", b"", b"https, http"])
def test_a_trusted_proxys_scheme_is_believed_only_when_it_is_http_or_https(proto: bytes) -> None:
    with trusting("10.0.0.0/24"):
        out, _, _ = request_headers(scope([(b"x-forwarded-proto", proto)], PROXY))
    assert values(out, b"x-forwarded-proto") == [settings.RELAY_PUBLIC_SCHEME.encode()]


@pytest.mark.parametrize(
    ("chain", "visitor"),
    [
        (b"", PROXY),  # nothing forwarded: the proxy itself
        (b"10.0.0.8, 10.0.0.9", PROXY),  # only trusted hops: the proxy is all we know
        (b"192.0.2.1, not-an-address", PROXY),  # a garbled chain names nobody
        (b"192.0.2.1:4444", PROXY),  # an address with a port is not an address
        (b"6.6.6.6, 192.0.2.1, 10.0.0.9", "192.0.2.1"),  # the last untrusted hop
        (b"::FFFF:192.0.2.1", "192.0.2.1"),  # one spelling per address
    ],
)
def test_the_visitor_behind_a_trusted_proxy_is_the_last_untrusted_hop(
    chain: bytes, visitor: str
) -> None:
    headers = [(b"x-forwarded-for", chain)] if chain else []
    with trusting("10.0.0.0/24"):
        assert client_ip(scope(headers, PROXY)) == visitor


def test_a_trusted_ipv4_proxy_stays_trusted_when_a_dual_stack_socket_spells_it_ipv6() -> None:
    headers = [(b"x-forwarded-for", b"198.51.100.9, ::ffff:10.0.0.9")]
    with trusting("10.0.0.0/24"):
        assert client_ip(scope(headers, f"::ffff:{PROXY}")) == "198.51.100.9"
        out, _, _ = request_headers(scope(headers, f"::ffff:{PROXY}"))
    assert values(out, b"x-real-ip") == [b"198.51.100.9"]


@given(st.lists(ADDRESS, max_size=4), st.sampled_from([PROXY, "2001:db8::1", "203.0.113.7"]))
def test_the_visitor_address_is_always_the_peer_or_a_hop_it_forwarded(
    hops: list[str], peer: str
) -> None:
    headers = [(b"x-forwarded-for", ", ".join(hops).encode())]
    with trusting("10.0.0.0/24", "2001:db8::/64"):
        visitor = client_ip(scope(headers, peer))
    assert visitor in {normal_ip(a) for a in [peer, *hops]}
    if peer == "203.0.113.7":
        assert visitor == peer


@given(header_list())
def test_framing_headers_are_reported_not_forwarded(headers: Headers) -> None:
    out, length, framing = request_headers(scope(headers))
    lengths = values(headers, b"content-length")
    assert length == (lengths[-1] if lengths else None)
    assert framing == bool(lengths or values(headers, b"transfer-encoding"))
    assert not {b"content-length", b"transfer-encoding"} & set(names(out))


# --- responses: what reaches the visitor ------------------------------------------------------
@given(header_list())
def test_no_hop_by_hop_header_of_the_app_reaches_the_visitor_but_content_length(
    headers: Headers,
) -> None:
    with override_settings(RELAY_DOMAIN="localhost"):
        out = response_headers(headers)
    dropped = (HOP_BY_HOP - {b"content-length"}) | connection_named(headers)
    assert not set(names(out)) & dropped
    assert names(out) == [n for n, _ in headers if n not in dropped]


def test_a_content_length_the_app_sent_is_kept_for_the_public_server_to_frame_with() -> None:
    headers = [(b"content-length", b"2"), (b"connection", b"keep-alive"), (b"keep-alive", b"5")]
    assert response_headers(headers) == [(b"content-length", b"2")]


# --- cookies: a tunnel's Set-Cookie stays its own ---------------------------------------------
RELAY_DOMAINS = ["localhost", "tunnels.example", "a.b.example"]


def cookie_domains(value: bytes) -> list[bytes]:
    """The Domain attributes a browser reads in a Set-Cookie (RFC 6265 section 5.2)."""
    found = []
    for attribute in value.split(b";")[1:]:
        key, _, target = attribute.partition(b"=")
        if key.strip(b" \t").lower() == b"domain":
            target = target.strip(b" \t").lower()
            found.append(target[1:] if target.startswith(b".") else target)
    return found


@st.composite
def domain_attribute(draw: st.DrawFn, relay_domain: str) -> bytes:
    labels = relay_domain.split(".")
    parent = ".".join(labels[draw(st.integers(0, len(labels) - 1)) :])
    target = draw(
        st.sampled_from([parent, f"app.{relay_domain}", f"not{relay_domain}", "example.org", ""])
    )
    target = draw(st.sampled_from([target, target.upper(), f".{target}", f"{target}."]))
    key = draw(st.sampled_from(["Domain", "domain", "DOMAIN", " Domain ", "\tdomain"]))
    space = draw(st.sampled_from(["", " ", "\t"]))
    return f"{key}={space}{target}{space}".encode()


@st.composite
def set_cookie(draw: st.DrawFn) -> tuple[str, bytes]:
    relay_domain = draw(st.sampled_from(RELAY_DOMAINS))
    others = st.sampled_from([b"Path=/", b"Secure", b"HttpOnly", b"SameSite=Lax", b"Max-Age=9"])
    attributes = draw(st.lists(st.one_of(others, domain_attribute(relay_domain)), max_size=5))
    pair = draw(st.sampled_from([b"sessionid=forged", b"domain=localhost", b"a=Domain=x"]))
    separator = draw(st.sampled_from([b"; ", b";", b" ; "]))
    return relay_domain, separator.join([pair, *attributes])


def reaches_past_the_tunnel(target: bytes, relay_domain: str) -> bool:
    """Would a cookie with this Domain reach the relay's own host or another tunnel?"""
    domain = relay_domain.encode()
    target = target.rstrip(b".")
    return bool(target) and (domain == target or domain.endswith(b"." + target))


@given(set_cookie())
def test_a_cookies_domain_never_reaches_past_the_tunnel_host(case: tuple[str, bytes]) -> None:
    relay_domain, value = case
    out = host_only_cookie(value, relay_domain)
    assert not [d for d in cookie_domains(out) if reaches_past_the_tunnel(d, relay_domain)]


@given(set_cookie())
def test_only_domain_attributes_are_ever_removed(case: tuple[str, bytes]) -> None:
    relay_domain, value = case
    out = host_only_cookie(value, relay_domain)
    pair, *attributes = value.split(b";")
    out_pair, *out_attributes = out.split(b";")
    assert out_pair == pair
    removed = [a for a in attributes if a not in out_attributes]
    assert all(a.partition(b"=")[0].strip().lower() == b"domain" for a in removed)
    assert out_attributes == [a for a in attributes if a not in removed]


@given(set_cookie())
def test_every_set_cookie_line_of_a_response_is_made_host_only(case: tuple[str, bytes]) -> None:
    relay_domain, value = case
    with override_settings(RELAY_DOMAIN=relay_domain):
        out = response_headers([(b"set-cookie", value), (b"x-note", value)])
    assert out == [(b"set-cookie", host_only_cookie(value, relay_domain)), (b"x-note", value)]


# --- addresses: one spelling, one key per network ------------------------------------------------
@given(ADDRESS)
def test_normal_ip_is_one_spelling_per_address(address: str) -> None:
    spelled = normal_ip(address)
    assert normal_ip(spelled) == spelled
    assert normal_ip(address.upper()) == spelled
    assert normal_ip(ipaddress.ip_address(address).exploded) == spelled


@given(IPV4)
def test_an_ipv4_mapped_address_is_its_ipv4_address(address: str) -> None:
    assert normal_ip(f"::ffff:{address}") == address
    assert address_key(f"::ffff:{address}", 64) == address_key(address, 64) == address


def test_normal_ip_leaves_what_is_not_an_address_alone() -> None:
    assert normal_ip("") == ""
    assert normal_ip("unix-socket") == "unix-socket"


@given(IPV6, st.integers(0, 2**64 - 1), st.sampled_from([48, 56, 64, 128]))
def test_an_ipv6_network_is_one_key_and_a_neighbour_network_another(
    address: str, host_bits: int, prefix: int
) -> None:
    parsed = ipaddress.IPv6Address(address)
    assume(parsed.ipv4_mapped is None)
    network = ipaddress.IPv6Network((parsed, prefix), strict=False)
    same = network.network_address + host_bits % network.num_addresses
    assert address_key(str(same), prefix) == address_key(address, prefix)
    if network.broadcast_address != ipaddress.IPv6Address(2**128 - 1):
        neighbour = network.broadcast_address + 1
        if neighbour.ipv4_mapped is None:
            assert address_key(str(neighbour), prefix) != address_key(address, prefix)


def test_an_ipv6_key_names_its_network_and_an_ipv4_key_its_address() -> None:
    assert address_key("2001:db8::1:2:3:4", 64) == "2001:db8::/64"
    assert address_key("2001:DB8::1", 128) == "2001:db8::1"
    assert address_key("192.0.2.1", 64) == "192.0.2.1"
    assert address_key("not-an-address", 64) == "not-an-address"
