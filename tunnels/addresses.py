"""The relay's public addresses as visitors and `lt` use them: the port a request came in on
unless RELAY_PUBLIC_PORT says otherwise (a proxy in front), the bare domain's URL and a
tunnel's URL. One place, so the admin, the account pages, the device flow and registration
answers print the same address."""

from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest

from relay import protocol


def public_port(request: HttpRequest) -> int:
    return int(settings.RELAY_PUBLIC_PORT or request.get_port())


def relay_url(request: HttpRequest) -> str:
    """The bare domain's URL (`lt login --host`, the device page, the account page)."""
    return protocol.relay_url(
        settings.RELAY_PUBLIC_SCHEME, settings.RELAY_DOMAIN, public_port(request)
    )


def tunnel_url(name: str, port: int) -> str:
    """The tunnel `name`'s URL; `port` from public_port (read once for a list of tunnels)."""
    return protocol.public_url(settings.RELAY_PUBLIC_SCHEME, name, settings.RELAY_DOMAIN, port)


def tcp_url(port: int) -> str:
    """A TCP tunnel's address, tcp://RELAY_TCP_HOST:port (an IPv6 literal in brackets)."""
    host = settings.RELAY_TCP_HOST
    shown = f"[{host}]" if ":" in host and not host.startswith("[") else host
    return f"{protocol.TCP_URL_SCHEME}://{shown}:{port}"
