"""Connections per visitor address (RELAY_MAX_CONNECTIONS_PER_IP): counted while open,
refused with 429 past the limit, given back when the connection closes, also after it
became a WebSocket. A part of relay/edge/channel.py's RelayHTTPChannel, on the reactor's
thread.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.conf import settings
from twisted.web import http

from relay.headers import is_trusted_proxy
from relay.pool.quota import address_key

# Open public connections per visitor address (relay.pool.quota.address_key), for
# RELAY_MAX_CONNECTIONS_PER_IP. Plain integers on the reactor's thread: no lock needed.
CONNECTIONS: dict[str, int] = {}


def release_address(key: str) -> None:
    count = CONNECTIONS.get(key, 0) - 1
    if count > 0:
        CONNECTIONS[key] = count
    else:
        CONNECTIONS.pop(key, None)


def admit(host: str | None) -> str | None:
    """Count a new connection from `host` (RELAY_MAX_CONNECTIONS_PER_IP): its key, to give
    back with release_address when it closes; "" when it is not counted (no limit, no
    address, a trusted proxy in front); None when the address is at its limit."""
    limit = settings.RELAY_MAX_CONNECTIONS_PER_IP
    if not limit or host is None or is_trusted_proxy(host):
        return ""  # behind a proxy every visitor shares its address: it limits them
    key = address_key(host)
    if CONNECTIONS.get(key, 0) >= limit:
        return None
    CONNECTIONS[key] = CONNECTIONS.get(key, 0) + 1
    return key


def too_many_message() -> str:
    return (
        f"Your address already has {settings.RELAY_MAX_CONNECTIONS_PER_IP} open connections "
        "to this relay; close some and try again."
    )


class AddressLimit(http.HTTPChannel):
    """A part of RelayHTTPChannel: the state below is the channel's (set in its `__init__`),
    and so is `_refuse`."""

    _address: str | None  # counted in CONNECTIONS while open
    _refuse: Callable[[int, str, str], None]

    def _admit_address(self) -> bool:
        transport: Any = self.transport  # zope-typed (see relay/edge/channel.py)
        key = admit(getattr(transport.getPeer(), "host", None))
        if key is None:
            self._refuse(429, "Too Many Requests", too_many_message())
            return False
        self._address = key or None
        return True

    def let_go(self) -> None:
        """The connection became one of our lt's upgraded pool connections: it is no
        visitor's any more (max_conn_count bounds a tunnel's pool connections), so its
        address's place is given back at once."""
        key, self._address = self._address, None
        if key is not None:
            release_address(key)

    def hand_over(self, transport: Any) -> None:
        """The connection became a WebSocket: Daphne's protocol now owns the transport and
        this channel never hears that it closed, so the new protocol gives the place back."""
        key, self._address = self._address, None
        if key is None:
            return
        protocol = getattr(transport, "wrappedProtocol", None) or transport.protocol
        lost = protocol.connectionLost

        def connection_lost(reason: Any) -> None:
            release_address(key)
            lost(reason)

        protocol.connectionLost = connection_lost
