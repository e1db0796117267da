"""What the visitor's connection needs to know before it reads a request body: which tunnel
the one Host header names (and whether it lives here), and the body limit that applies (the
relay's, or the tunnel's plan's when lower). Used by relay/edge/channel.py on the reactor's
thread.
"""

from __future__ import annotations

from typing import Any

from relay.pool.registry import get_registry
from relay.pool.tunnel import Tunnel
from relay.protocol import tunnel_name_from_host


def tunnel_for(request: Any, domain: bytes) -> tuple[str | None, Tunnel | None]:
    """The tunnel name the request's one Host header names under `domain` (None: the site,
    or no single Host), and that tunnel if it lives on this node."""
    hosts = request.requestHeaders.getRawHeaders(b"host") or []
    if len(hosts) != 1:
        return None, None
    name = tunnel_name_from_host(hosts[0], domain)
    request.relay_one_host, request.relay_tunnel = True, name  # for the scope: read once
    return name, get_registry().get(name) if name else None


def no_tunnel_anywhere() -> bool:
    """A name absent here is absent everywhere on a single node; in a cluster another node
    may hold it (the request is forwarded there, body and all)."""
    return get_registry().cluster is None


def body_limit_for(tunnel: Tunnel | None, limit: int) -> int:
    """`limit` (RELAY_MAX_BODY_BYTES), or the tunnel's plan limit when that is lower (0: no
    limit)."""
    plan = tunnel.quota.max_body_bytes if tunnel and tunnel.quota else 0
    if plan and (not limit or plan < limit):
        limit = plan
    return limit
