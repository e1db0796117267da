"""The wire rules in relay/protocol.py, fed plain values."""

from __future__ import annotations

import re

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from relay import protocol
from relay.headers import normal_ip
from tunnels import tokens


@pytest.mark.parametrize("name", ["abcd", "my-app-one", "a1b2c3", "x" * 63, "a" + "-" * 10 + "b"])
def test_it_accepts_names_the_npm_client_accepts(name: str) -> None:
    assert protocol.is_valid_subdomain(name)


@pytest.mark.parametrize(
    "name", ["abc", "-abcd", "abcd-", "ABCD", "a_b_c_d", "a.bcd", "x" * 64, "abcd\n", ""]
)
def test_it_rejects_names_outside_the_rule_or_a_dns_label(name: str) -> None:
    assert not protocol.is_valid_subdomain(name)


def test_random_names_follow_the_rule_and_differ() -> None:
    names = {protocol.random_subdomain() for _ in range(200)}
    assert all(protocol.is_valid_subdomain(n) for n in names)
    assert len(names) > 190


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        (b"quiet-fox.localhost:8080", "quiet-fox"),
        (b"Quiet-Fox.LOCALHOST", "quiet-fox"),
        (b"quiet-fox.localhost.", "quiet-fox"),
        (b"localhost:8080", None),
        (b"a.b.localhost", None),
        (b"quiet-fox.example.com", None),
        (b".localhost", None),
        (b"evil-localhost", None),
        (b"quiet-fox.localhost:8080@evil.example", None),  # the app would see evil.example
        (b"quiet-fox.localhost:@evil.example/x", None),
        (b"quiet-fox.localhost:99999", None),
        (b"quiet-fox.localhost:0", None),
        (b"quiet-fox.localhost:", None),
        (b"quiet-fox.localhost:65535", "quiet-fox"),
    ],
)
def test_it_finds_the_tunnel_name_in_the_host_header(host: bytes, expected: str | None) -> None:
    assert protocol.tunnel_name_from_host(host, b"localhost") == expected


@given(st.binary(max_size=12) | st.text(":0123456789@/.#?a", max_size=12).map(str.encode))
@example(b":8080@evil.example")
def test_a_host_names_a_tunnel_only_with_nothing_after_the_name_but_a_port(suffix: bytes) -> None:
    name = protocol.tunnel_name_from_host(b"quiet-fox.localhost" + suffix, b"localhost")
    if name is not None:
        assert name == "quiet-fox"
        assert re.fullmatch(rb"\.?(?::[0-9]{1,5})?", suffix), suffix


def test_npm_client_gets_errors_as_a_2xx_so_it_prints_them() -> None:
    assert protocol.error_status_for(b"axios/0.21.4", 409) == protocol.NPM_CLIENT_ERROR_STATUS
    assert protocol.error_status_for(b"tunnelsite-lt/0.1", 409) == 409
    assert protocol.error_status_for(b"axios/0.21.4", 200) == 200


def test_npm_client_keeps_retrying_on_server_errors() -> None:
    assert protocol.error_status_for(b"axios/0.21.4", 503) == 503


@pytest.mark.parametrize(
    ("scheme", "port", "url"),
    [
        ("http", 8080, "http://n4me.example:8080"),
        ("http", 80, "http://n4me.example"),
        ("https", 443, "https://n4me.example"),
        ("https", 8443, "https://n4me.example:8443"),
    ],
)
def test_public_urls_leave_out_default_ports(scheme: str, port: int, url: str) -> None:
    assert protocol.public_url(scheme, "n4me", "example", port) == url


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("::ffff:127.0.0.1", "127.0.0.1"),
        ("::FFFF:127.0.0.1", "127.0.0.1"),
        ("2001:DB8:0:0::1", "2001:db8::1"),
        ("127.0.0.2", "127.0.0.2"),
        ("not an address", "not an address"),
    ],
)
def test_addresses_compare_in_one_spelling(text: str, expected: str) -> None:
    assert normal_ip(text) == expected


@pytest.mark.parametrize(
    "token", ["lt_" + "\x00" * 40, "lt_ABCDEFGH" + "a" * 32, "lt_abcdefgh" + "a" * 31 + "!"]
)
def test_a_token_of_the_wrong_shape_is_not_looked_up(token: str) -> None:
    assert tokens.split(token) is None


def test_a_token_of_the_right_shape_splits_into_prefix_and_secret() -> None:
    assert tokens.split("lt_abcdefgh" + "A_-z" * 8) == ("abcdefgh", "A_-z" * 8)
