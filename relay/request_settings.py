"""The settings each proxied request reads, read once, and again after every change.

`settings.X` is Django's LazySettings: every read runs `LazyObject.__getattribute__` in
Python (close to a microsecond), and a request through a tunnel read about ten (its
deadlines, its visitor's address, its headers). The byte path reads them from one
`RequestSettings` instead: made at the first read, and made anew at the next read after
Django's `setting_changed` (override_settings and pytest-django's `settings` fixture send
it), so a test that changes one sees its value at once. The operator's settings do not
change while a relay runs; the few runrelay sets from its flags by assignment (no signal:
RELAY_PUBLIC_SCHEME for `--tls-cert`, the address settings) are followed by `refresh`.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from django.conf import settings
from django.core.signals import setting_changed

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True, slots=True)
class RequestSettings:
    response_timeout_s: float  # RELAY_RESPONSE_TIMEOUT_S
    socket_wait_s: float  # RELAY_SOCKET_WAIT_S
    max_waiters: int  # RELAY_MAX_WAITERS
    max_header_bytes: int  # RELAY_MAX_HEADER_BYTES
    trusted_proxies: tuple[IPNetwork, ...]  # RELAY_TRUSTED_PROXIES
    public_scheme: str  # RELAY_PUBLIC_SCHEME
    ipv6_prefix: int  # RELAY_IPV6_PREFIX

    @classmethod
    def read(cls) -> RequestSettings:
        return cls(
            response_timeout_s=settings.RELAY_RESPONSE_TIMEOUT_S,
            socket_wait_s=settings.RELAY_SOCKET_WAIT_S,
            max_waiters=settings.RELAY_MAX_WAITERS,
            max_header_bytes=settings.RELAY_MAX_HEADER_BYTES,
            trusted_proxies=tuple(settings.RELAY_TRUSTED_PROXIES),
            public_scheme=settings.RELAY_PUBLIC_SCHEME,
            ipv6_prefix=settings.RELAY_IPV6_PREFIX,
        )


_current: list[RequestSettings] = []  # the one in force (empty: read at the next use)


def request_settings() -> RequestSettings:
    """The settings in force: a list lookup per read, after the first."""
    if not _current:
        _current.append(RequestSettings.read())
    return _current[0]


def refresh() -> None:
    """Read them again when next used: for settings set by assignment, which sends no
    `setting_changed` (runrelay's flags, relay/address.py)."""
    _current.clear()


def _forget(**_: object) -> None:
    """A setting changed (override_settings): read them again when next used."""
    _current.clear()


setting_changed.connect(_forget)
