"""tunnelsite's `lt`: a localtunnel-compatible tunnel client, as a command and a library.

    async with open_tunnel(port=3000, host="http://localhost:8080") as tunnel:
        print(tunnel.url)

    with open_tunnel_sync(port=3000) as tunnel:  # runs the tunnel in a background thread
        print(tunnel.url)

Imports nothing from Django or the relay, so the command starts fast anywhere.
"""

from __future__ import annotations

__version__ = "0.1.0"

from .library import SyncTunnel, open_tunnel, open_tunnel_sync, via_relay  # noqa: E402
from .options import TunnelOptions  # noqa: E402
from .tunnel import CannotConnect, ClientTunnel, TunnelError  # noqa: E402

__all__ = [
    "CannotConnect",
    "ClientTunnel",
    "SyncTunnel",
    "TunnelError",
    "TunnelOptions",
    "__version__",
    "open_tunnel",
    "open_tunnel_sync",
    "via_relay",
]
