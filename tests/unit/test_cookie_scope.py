"""A tunnel cannot set cookies for the relay's domain: the admin's session stays the admin's."""

from __future__ import annotations

import pytest
from django.conf import settings
from django.test import override_settings

from relay.headers import host_only_cookie, response_headers


def test_the_admin_cookies_are_host_only() -> None:
    assert settings.SESSION_COOKIE_DOMAIN is None
    assert settings.CSRF_COOKIE_DOMAIN is None


@pytest.mark.parametrize(
    "domain_attribute",
    [
        "Domain=.localhost",
        "Domain=localhost",
        "domain=LOCALHOST",
        " DOMAIN = .LocalHost ",
        "Domain=localhost.",
    ],
)
def test_a_domain_naming_the_relay_domain_is_removed(domain_attribute: str) -> None:
    value = f"sessionid=forged; Path=/;{domain_attribute}; HttpOnly".encode()
    assert host_only_cookie(value, "localhost") == b"sessionid=forged; Path=/; HttpOnly"


@pytest.mark.parametrize("parent", ["tunnels.example", ".tunnels.example", "example", ".EXAMPLE"])
def test_a_domain_naming_a_parent_of_the_relay_domain_is_removed(parent: str) -> None:
    value = f"csrftoken=forged; Domain={parent}; Path=/".encode()
    assert host_only_cookie(value, "tunnels.example") == b"csrftoken=forged; Path=/"


@pytest.mark.parametrize(
    "value",
    [
        b"theme=dark; Path=/; Max-Age=60",
        b"theme=dark; Domain=my-app.localhost",  # the tunnel's own host: stays its own
        b"theme=dark; Domain=notlocalhost",  # only whole labels count
        b"domain=localhost; Path=/",  # a cookie *named* domain is not the attribute
        b"theme=dark; Domain=",  # empty: browsers ignore it already
    ],
)
def test_other_cookies_pass_unchanged(value: bytes) -> None:
    assert host_only_cookie(value, "localhost") is value


def test_every_attribute_naming_the_domain_goes_and_the_rest_stay_in_order() -> None:
    value = b"a=b; Domain=localhost; Secure; domain=.localhost; SameSite=Lax"
    assert host_only_cookie(value, "localhost") == b"a=b; Secure; SameSite=Lax"


@override_settings(RELAY_DOMAIN="tunnels.example")
def test_response_headers_rewrite_only_set_cookie_lines() -> None:
    raw = [
        (b"content-type", b"text/html"),
        (b"set-cookie", b"sessionid=forged; Domain=.tunnels.example; Path=/"),
        (b"x-note", b"Domain=.tunnels.example"),
        (b"set-cookie", b"mine=1; Domain=app.tunnels.example"),
        (b"connection", b"keep-alive"),
    ]
    assert response_headers(raw) == [
        (b"content-type", b"text/html"),
        (b"set-cookie", b"sessionid=forged; Path=/"),
        (b"x-note", b"Domain=.tunnels.example"),
        (b"set-cookie", b"mine=1; Domain=app.tunnels.example"),
    ]
