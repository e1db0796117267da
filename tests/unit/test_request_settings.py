"""The settings a proxied request reads (relay/request_settings.py): read once, not per
request, and read again as soon as a setting changes (override_settings, the `settings`
fixture), so a test that changes one sees its value on the byte path at once."""

from __future__ import annotations

import dataclasses
import ipaddress

import pytest
from django.test import override_settings

from relay.request_settings import RequestSettings, request_settings

NETWORKS = [ipaddress.ip_network("10.9.0.0/16")]
# Each field, its setting, and a value none of them has by default.
CHANGED = {
    "response_timeout_s": ("RELAY_RESPONSE_TIMEOUT_S", 7.5),
    "socket_wait_s": ("RELAY_SOCKET_WAIT_S", 0.25),
    "max_waiters": ("RELAY_MAX_WAITERS", 3),
    "max_header_bytes": ("RELAY_MAX_HEADER_BYTES", 2048),
    "trusted_proxies": ("RELAY_TRUSTED_PROXIES", NETWORKS),
    "public_scheme": ("RELAY_PUBLIC_SCHEME", "https"),
    "ipv6_prefix": ("RELAY_IPV6_PREFIX", 48),
}


def test_every_field_is_checked_below() -> None:
    assert {field.name for field in dataclasses.fields(RequestSettings)} == set(CHANGED)


@pytest.mark.parametrize("field", sorted(CHANGED))
def test_a_changed_setting_is_read_again_and_its_old_value_comes_back(field: str) -> None:
    name, value = CHANGED[field]
    expected = tuple(value) if isinstance(value, list) else value  # a list is kept as a tuple
    before = getattr(request_settings(), field)
    assert before != expected
    with override_settings(**{name: value}):
        assert getattr(request_settings(), field) == expected
    assert getattr(request_settings(), field) == before


def test_the_settings_are_read_once_until_one_changes() -> None:
    first = request_settings()
    assert request_settings() is first
    with override_settings(RELAY_MAX_WAITERS=first.max_waiters + 1):
        assert request_settings() is not first


def test_runrelays_https_flag_reaches_a_snapshot_read_before_it() -> None:
    """runrelay's --tls-cert sets RELAY_PUBLIC_SCHEME by assignment (relay/address.py), which
    sends no setting_changed: `refresh`, called right after, makes the byte path see it."""
    from django.conf import settings

    from relay import address
    from relay.request_settings import refresh

    with override_settings(RELAY_PUBLIC_SCHEME="http", RELAY_EXPLICIT_HTTPS_SETTINGS={}):
        assert request_settings().public_scheme == "http"  # read before the flag applies
        address.apply_https(settings)
        refresh()
        assert request_settings().public_scheme == "https"
