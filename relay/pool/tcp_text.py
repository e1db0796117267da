"""What an HTTP visitor of a TCP tunnel's host is told. A message only, apart from the TCP
listener (relay/pool/tcp_ports.py), so the HTTP proxies and relay.face import no listener code.
"""

from __future__ import annotations

from django.conf import settings as django_settings

from relay.pool.tunnel import Tunnel
from relay.protocol import TCP_URL_SCHEME


def http_refusal(tunnel: Tunnel) -> str:
    """The 404's message for an HTTP visitor (a WebSocket, the inspector) of a TCP tunnel's
    host: its pool connections carry frames, never an HTTP exchange."""
    assert tunnel.tcp is not None
    if not tunnel.tcp.port:  # its registration is still opening the port
        return f"{tunnel.name} is a TCP tunnel: connect to its tcp:// address with a TCP client."
    host = django_settings.RELAY_TCP_HOST
    return (
        f"{tunnel.name} is a TCP tunnel: connect to {TCP_URL_SCHEME}://{host}:{tunnel.tcp.port}"
        " with a TCP client."
    )
